"""Quiet logs: each thing a run says is said once, in plain words, in one format.

Imported by `newsrec.cli` (train.py, eval.py, recommend.py), so it applies to the command
lines; Python users of the package keep the libraries' own behaviour.

- Lightning's advertisements for its cloud products, its note that it will not add its own
  model summary, and its "Restoring states from the checkpoint path ..." / "Loaded model
  weights ..." lines (printed once per validate/test/predict call: twice for one checkpoint
  at the end of every run) are dropped; newsrec says once which checkpoint it evaluates.
- Libraries that print through a handler of their own *and* the root logger (Hugging Face,
  transformers, Optuna with colour codes) print through the root logger only, in Hydra's
  format, so a line appears once and a log file holds no ANSI codes.
- Hugging Face's tqdm bars (transformers' "Loading weights", hub downloads) would draw into
  Lightning's Rich bars; they are off from the start of a run unless
  HF_HUB_DISABLE_PROGRESS_BARS=0 is set.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

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
# Lightning 2.6 deprecates DDPStrategy(broadcast_buffers=False) (conf/trainer/ddp*.yaml) and
# advises in the same message to keep it until its replacement exists: nothing to act on.
warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated")

# Lightning messages that are not for a newsrec user, by their first words.
_DROPPED = (
    "Trainer already configured with model summary callbacks",
    "Restoring states from the checkpoint path at",
    "Loaded model weights from the checkpoint at",
    "Restored all states from the checkpoint at",
)

# Libraries with a stream handler of their own (and colour codes, for Optuna).
LIBRARIES = ("huggingface_hub", "transformers", "optuna")


class LightningNoise(logging.Filter):
    """Drops the "💡 Tip" advertisements for Lightning's cloud products (litlogger,
    litmodels) and the messages of `_DROPPED`; every other message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith(_DROPPED):
            return False
        return not (text.startswith("💡 Tip") and ("litlogger" in text or "litmodels" in text))


# rank_zero_info logs through whichever of the two rank-zero loggers was imported last.
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(LightningNoise())


def route_library_logs() -> None:
    """Make the libraries of `LIBRARIES` that are imported log through the root logger only.

    Called when a run starts and when a sweep starts (Optuna is imported by its sweeper
    before any job): their own handlers are removed and propagation turned on, so Hydra's
    handlers print each line once, without colour codes."""
    for name in LIBRARIES:
        if name not in sys.modules:
            continue
        if name == "optuna":  # keeps its own handler unless told; it also stops propagating
            optuna = sys.modules["optuna"]
            optuna.logging.disable_default_handler()
            optuna.logging.enable_propagation()
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") != "0":
        import huggingface_hub.utils  # imported by Lightning already

        # transformers, imported later, reads this state; imported already, it is told.
        huggingface_hub.utils.disable_progress_bars()
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


class QuietSweep(Callback):
    """Hydra callback (conf/hydra/default.yaml): Hydra builds the sweeper after
    `on_multirun_start`; Optuna's, imported here first, then logs its study through Hydra's
    handlers instead of its own coloured one."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optuna" in str(config.hydra.sweeper.get("_target_", "")):
            import optuna  # noqa: F401

        route_library_logs()
