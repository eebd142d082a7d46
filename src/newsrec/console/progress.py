"""Training progress where nobody watches a terminal (conf/callbacks: `training_log`).

Rich's progress bar draws only on a terminal: under nohup, SLURM or any redirected stdout a
run would print nothing between its start and the end of its first validation. There,
`TrainingLog` turns the bar off and logs a line every `every_s` seconds instead, and one
after each validation:

    [...][newsrec.console.progress][INFO] - epoch 1/3  step 40/94  152 samples/s  loss 1.4120  ETA epoch 0:00:21, fit 0:01:30
    [...][newsrec.console.progress][INFO] - validation after epoch 1: auc 0.5873  mrr 0.2519  ndcg@5 0.2731  ndcg@10 0.3611 (2.1 s)

On a terminal the Rich bar stays and no line is logged. In both, an epoch shorter than
`trainer.log_every_n_steps` batches gets its logging interval lowered to its length, so a
tiny run still draws a train/loss curve (Lightning would warn and draw none).
"""

from __future__ import annotations

import datetime
import logging
import math
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from newsrec.constants import METRICS

log = logging.getLogger(__name__)


def interactive() -> bool:
    """Whether Rich draws live bars here: a terminal (or Jupyter), as Rich itself decides."""
    from rich import get_console

    console = get_console()
    return console.is_terminal or console.is_jupyter


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(0.0, seconds))))


class TrainingLog(pl.Callback):
    """Progress lines in a non-terminal; a train/loss curve for short epochs (module doc).

    `lines`: "auto" (log lines when stdout is not a terminal), true or false.
    `every_s`: seconds between two progress lines.
    """

    def __init__(self, every_s: float = 30.0, lines: bool | str = "auto") -> None:
        self.every_s = float(every_s)
        self.lines = (not interactive()) if lines == "auto" else bool(lines)
        self._loss = None
        self._losses = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.lines and trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.disable()
        if stage == "fit":
            batches = self._batches_per_epoch(trainer)
            if batches and batches < trainer.log_every_n_steps:
                trainer.log_every_n_steps = batches

    @staticmethod
    def _batches_per_epoch(trainer: pl.Trainer) -> int | None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None:
            return None
        batches = len(datamodule.train_dataloader())
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            return min(batches, limit)
        return max(1, int(batches * limit)) if limit is not None else batches

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step
        self._samples = self._samples_then = 0
        self._total_steps = trainer.estimated_stepping_batches

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.lines:
            return
        self._samples += _batch_size(batch) * trainer.world_size
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # summed on the device: no sync per step
            loss = loss.detach().float()
            self._loss = loss if self._loss is None else self._loss + loss
            self._losses += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            log.info(self._line(trainer, batch_idx, now))
            self._last, self._samples_then = now, self._samples
            self._loss, self._losses = None, 0

    def _line(self, trainer: pl.Trainer, batch_idx: int, now: float) -> str:
        batches = trainer.num_training_batches
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        rate = (self._samples - self._samples_then) / max(now - self._last, 1e-9)
        steps_done = trainer.global_step - self._first_step
        step_s = (now - self._start) / max(steps_done, 1)
        parts = [
            f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs else ""),
            f"step {batch_idx + 1}/{batches}"
            if math.isfinite(batches)
            else f"step {batch_idx + 1}",
            f"{rate:,.0f} samples/s",
        ]
        if self._losses:
            parts.append(f"loss {float(self._loss) / self._losses:.4f}")
        eta = []
        if math.isfinite(batches):
            eta.append(f"epoch {_clock((batches - batch_idx - 1) * step_s)}")
        if math.isfinite(self._total_steps):
            eta.append(f"fit {_clock((self._total_steps - trainer.global_step) * step_s)}")
        if eta:
            parts.append("ETA " + ", ".join(eta))
        return "  ".join(parts)

    @rank_zero_only
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_start = time.monotonic()

    @rank_zero_only
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.lines or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        shown = [f"{m} {float(metrics[f'val/{m}']):.4f}" for m in METRICS if f"val/{m}" in metrics]
        seconds = time.monotonic() - self._validation_start
        log.info(
            "validation after epoch %d, step %d: %s (%.1f s)",
            trainer.current_epoch + 1,
            trainer.global_step,
            "  ".join(shown) or "no metrics",
            seconds,
        )

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.lines:
            return
        seconds = time.monotonic() - self._start
        log.info(
            "training done: %d steps in %s (%s samples/s)",
            trainer.global_step - self._first_step,
            _clock(seconds),
            f"{self._samples / max(seconds, 1e-9):,.0f}",
        )


def _batch_size(batch) -> int:
    """Samples in a training batch (a dict of tensors, first dimension)."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else 0
