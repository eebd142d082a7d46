"""What the command lines share: user errors without a traceback, the metrics printed and
written, and quiet logs (Lightning's advertisements and warnings that are not the user's)."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from newsrec.constants import METRICS
from newsrec.utils.io import write_text

# Evaluation metrics are gathered by ImpressionMetrics itself, so logging them without
# sync_dist is right; Lightning's advice to add it does not apply.
warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
# Lightning 2.6 calls torch's deprecated `isinstance(x, LeafSpec)` on every batch it moves;
# the warning is Lightning's to fix and says nothing about this run.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"pytorch_lightning\.utilities\._pytree",
)


class _NoProductTips(logging.Filter):
    """Drops what Lightning prints at every run that is not for a newsrec user: the "💡 Tip"
    advertisements for its cloud products (litlogger, litmodels), and the note that it will
    not add its default model summary because conf/callbacks gives one. Every other message
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("Trainer already configured with model summary callbacks"):
            return False
        return not (text.startswith("💡 Tip") and ("litlogger" in text or "litmodels" in text))


# rank_zero_info logs through whichever of the two rank-zero loggers was imported last.
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoProductTips())


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user causes and fixes (bad or missing files, data settings, downloads)."""
    from newsrec.data.download import CorruptZipError, DownloadError, UnsafeZipError
    from newsrec.data.mind import DataError

    return (DataError, DownloadError, CorruptZipError, UnsafeZipError, FileNotFoundError)


def run_cli(function, cfg: DictConfig):
    """train.py / eval.py: run `function(cfg)`; a user error prints its message (what, where,
    what to do) and exits with status 1, without a traceback unless HYDRA_FULL_ERROR=1."""
    try:
        return function(cfg)
    except user_errors() as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, written to a temporary name and renamed."""
    write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


@rank_zero_only
def print_metrics(metrics: dict, stage: str, label: str = "") -> None:
    """The official metrics of `stage` ("val", "test"), with the oracle's beside them."""
    rows = []
    for name in METRICS:
        value = metrics.get(f"{stage}/{name}")
        oracle = metrics.get(f"{stage}/oracle_{name}")
        if value is None:
            continue
        rows.append(
            f"  {name:<8} {value:.4f}" + (f"   oracle {oracle:.4f}" if oracle is not None else "")
        )
    if rows:
        title = f"{stage} metrics ({label})" if label else f"{stage} metrics"
        print(f"{title}:\n" + "\n".join(rows), flush=True)
