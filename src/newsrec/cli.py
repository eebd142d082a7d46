"""What the command lines share: user errors without a traceback, no run folder left behind
by a run that failed before it wrote anything, the metrics printed and written, and quiet
logs (`newsrec.console.quiet`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import textwrap
from pathlib import Path

from hydra.errors import CompactHydraException
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from newsrec.console.quiet import route_library_logs
from newsrec.constants import METRICS
from newsrec.utils.io import write_text

log = logging.getLogger(__name__)

# Set once a task function runs: a command that exits before that failed in Hydra's
# composition of the config (a mistyped override), see newsrec.console.hints.
task_started = False


class JobFailed(CompactHydraException):
    """A job of a multirun stopped by a user error (already printed): Hydra records the job
    as failed, runs the other jobs and the end-of-job callbacks (the comparison table), then
    prints this one line instead of a traceback."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user causes and fixes (bad or missing files, data settings, downloads)."""
    from newsrec.data.download import CorruptZipError, DownloadError, UnsafeZipError
    from newsrec.data.mind import DataError

    return (DataError, DownloadError, CorruptZipError, UnsafeZipError, FileNotFoundError)


def run_cli(function, cfg: DictConfig):
    """train.py / eval.py / recommend.py: run `function(cfg)`.

    A user error prints its message (what, where, what to do) without a traceback (unless
    HYDRA_FULL_ERROR=1) and exits with status 1 (or the error's `exit_status`); in a
    multirun it fails the job (`JobFailed`) so that the other jobs still run. A run folder
    holding nothing but Hydra's own files is removed when the run fails.
    """
    global task_started
    task_started = True
    route_library_logs()
    try:
        return function(cfg)
    except user_errors() as err:
        _remove_empty_run_folder()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        if _in_multirun():
            raise JobFailed(f"a run of the sweep failed: {err}") from None
        raise SystemExit(getattr(err, "exit_status", 1)) from None
    except BaseException:
        _remove_empty_run_folder()
        raise


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return Path(HydraConfig.get().runtime.output_dir)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# What Hydra writes into every run folder before the task starts.
_HYDRA_FILES = {".hydra", "train.log", "eval.log", "recommend.log"}


def _remove_empty_run_folder() -> None:
    """Remove this run's folder if it holds only Hydra's config copy and log: a run that
    failed before writing anything (a bad setting, a missing file) leaves nothing behind.
    Under DDP only the first process decides (the others share the folder)."""
    if int(os.environ.get("LOCAL_RANK", "0")) or int(os.environ.get("NODE_RANK", "0")):
        return
    folder = _hydra_output_dir()
    if folder is None or not folder.is_dir():
        return
    if {p.name for p in folder.iterdir()} <= _HYDRA_FILES:
        _close_file_logs(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _close_file_logs(folder: Path) -> None:
    """Detach and close the log handlers writing into `folder` (Hydra's `<task>.log`)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", [])):
            name = getattr(handler, "baseFilename", None)
            if name is not None and Path(name).parent == folder.resolve():
                logger.removeHandler(handler)
                handler.close()


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, written to a temporary name and renamed."""
    write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


@rank_zero_only
def print_metrics(metrics: dict, stage: str, label: str = "") -> None:
    """The official metrics of `stage` ("val", "test"), with the oracle's beside them, then
    the stage's other figures: beyond-accuracy and RADio lines, results by slice as a table."""
    rows = []
    for name in METRICS:
        value = metrics.get(f"{stage}/{name}")
        oracle = metrics.get(f"{stage}/oracle_{name}")
        if value is None:
            continue
        rows.append(
            f"  {name:<8} {value:.4f}" + (f"   oracle {oracle:.4f}" if oracle is not None else "")
        )
    official = {f"{stage}/{n}" for n in METRICS} | {f"{stage}/oracle_{n}" for n in METRICS}
    others = {
        key.removeprefix(stage + "/"): value
        for key, value in sorted(metrics.items())
        if key.startswith(f"{stage}/")
        and key not in official
        and not key.endswith("_best")  # val/auc_best: the auc above, as chosen
        and isinstance(value, float)
    }
    if others and rows:
        rows += _other_rows(others)
    if rows:
        title = f"{stage} metrics ({label})" if label else f"{stage} metrics"
        print(f"{title}:\n" + "\n".join(rows), flush=True)


RADIO = ("calibration", "fragmentation", "activation", "representation", "alternative_voices")
COUNTS = ("fragmentation_pairs", "radio_lists")  # how many pairs / lists RADio judged
SLICE_ORDER = [f"history_{b}" for b in ("0", "1-4", "5-9", "10-19", "20-49", "50+")] + [
    "user_new",
    "user_seen",
    "news_fresh",
    "news_seen",
]


def _other_rows(others: dict[str, float]) -> list[str]:
    """Beyond-accuracy and RADio figures wrapped under their names; slices as a table."""
    slices: dict[str, dict[str, float]] = {}
    groups: dict[str, list[str]] = {"beyond accuracy": [], "RADio": [], "other": []}
    for key, value in others.items():
        if key.startswith("slice/"):
            name, _, metric = key.removeprefix("slice/").rpartition("/")
            slices.setdefault(name, {})[metric] = value
        elif key.startswith(COUNTS):
            groups["RADio"].append(f"{key} {value:,.0f}")
        else:
            group = "RADio" if key.startswith(RADIO) else "other"
            if key.startswith(("diversity", "coverage", "novelty", "personalization")):
                group = "beyond accuracy"
            groups[group].append(f"{key} {value:.4f}")
    rows = []
    for group, items in groups.items():
        if items:
            label = f"  {group}: " if group != "other" else "  "
            rows += textwrap.wrap(
                ", ".join(items), 96, initial_indent=label, subsequent_indent="    "
            )
    if slices:  # history bins by length, not by name
        order = {name: i for i, name in enumerate(SLICE_ORDER)}
        slices = dict(sorted(slices.items(), key=lambda item: order.get(item[0], len(order))))
        rows.append(f"  {'by slice':<16} {'auc':>7} {'ndcg@10':>8} {'impressions':>12}")
        for name, values in slices.items():
            auc, ndcg = values.get("auc", float("nan")), values.get("ndcg@10", float("nan"))
            count = values.get("impressions", 0)
            rows.append(f"  {name:<16} {auc:>7.4f} {ndcg:>8.4f} {count:>12,.0f}")
    return rows
