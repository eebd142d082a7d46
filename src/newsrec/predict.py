"""Predicting an unlabeled test split: the leaderboard's prediction.zip, and where the data
keeps the hidden clicks (the synthetic worlds' truth.txt) what the leaderboard would score.

Under DDP each rank predicts its own share of the impressions; rank 0 gathers them by global
impression id, puts them back in behaviors.tsv order and writes the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from newsrec.beyond import BeyondAccuracyCallback
from newsrec.constants import METRICS
from newsrec.data.datamodule import MindDataModule
from newsrec.metrics import impression_metrics
from newsrec.models.module import NewsRecModule
from newsrec.score import iter_truth
from newsrec.submission import ranks_from_scores, write_prediction


def predict_unlabeled(
    trainer: pl.Trainer,
    module: NewsRecModule,
    datamodule: MindDataModule,
    out: Path,
    ckpt_path: str | None = None,
) -> dict:
    """prediction.zip for the unlabeled test split in `out`; scored against truth.txt (and
    the oracle) where the data keeps the hidden clicks, as the synthetic worlds do."""
    split = datamodule.data.splits[datamodule.test_split]
    outputs = trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt_path)
    outputs = _on_rank_zero(trainer, outputs)
    if trainer.global_rank != 0:
        return {}  # rank 0 writes the submission
    scores = _gather_predictions(outputs, split)  # NaN where an impression got none
    metrics: dict = {}
    if not np.isnan(scores).any():
        target = write_prediction(
            out / "prediction.zip",
            np.asarray(split.impression_id),
            scores,
            np.asarray(split.candidate_offsets),
        )
        print(f"leaderboard submission written to {target}", flush=True)
        metrics["prediction"] = str(target)
    elif trainer.fast_dev_run:  # a debug run predicts one batch: scored, but no submission
        print("fast_dev_run: no prediction.zip (only part of the split was predicted)")
    else:
        raise RuntimeError("some impressions received no prediction")
    for callback in trainer.callbacks:  # the lists' beyond-accuracy metrics
        if isinstance(callback, BeyondAccuracyCallback):
            metrics.update(callback.results)
    truth = Path(datamodule.paths.test or "") / "truth.txt"
    if datamodule.test_split == "test" and truth.is_file():
        # `python -m newsrec.score truth.txt prediction.zip` gives the same figures.
        metrics.update(_hidden_label_metrics(truth, split, scores))
    return metrics


def _hidden_label_metrics(truth: Path, split, scores: np.ndarray) -> dict:
    labels = {impression: row for _, impression, row in iter_truth(truth)}
    offsets = np.asarray(split.candidate_offsets)
    # Every impression, or those a debug run (fast_dev_run) predicted: all or none of each.
    kept = ~np.isnan(scores[offsets[:-1]])
    ids = np.asarray(split.impression_id)[kept]
    counts = np.diff(offsets)[kept]
    keep = np.repeat(kept, np.diff(offsets))
    flat = np.concatenate([labels[int(i)] for i in ids])
    owner = np.repeat(ids, counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # Scored from the ranks, as the leaderboard scores a submission (ties broken by order).
    result = impression_metrics(1.0 / ranks_from_scores(scores[keep], offsets), flat, owner)
    metrics = {f"test/{name}": float(result[name]) for name in METRICS}
    if split.truth is not None:  # the oracle: ranking by the true click probability
        truth_p = np.asarray(split.truth, dtype=np.float64)[keep]
        oracle = impression_metrics(truth_p, flat, owner)
        metrics.update({f"test/oracle_{name}": float(oracle[name]) for name in METRICS})
    return metrics


def _on_rank_zero(trainer: pl.Trainer, outputs: list[dict]) -> list[dict]:
    """Every rank's predictions, on rank 0 (under DDP each rank predicts its own share of the
    impressions and trainer.predict returns only that share); [] on the other ranks."""
    if trainer.world_size == 1:
        return outputs
    parts = [None] * trainer.world_size if trainer.global_rank == 0 else None
    torch.distributed.gather_object(outputs, parts, dst=0)
    return [batch for part in parts or [] for batch in part]


def _gather_predictions(outputs: list[dict], split) -> np.ndarray:
    """Flat scores in behaviors.tsv order from per-batch predictions keyed by impression id
    (NaN for an impression that got no prediction)."""
    position = {int(i): k for k, i in enumerate(np.asarray(split.impression_id))}
    offsets = np.asarray(split.candidate_offsets)
    scores = np.full(int(offsets[-1]), np.nan, dtype=np.float64)
    for batch in outputs:
        for impression, row, mask in zip(
            batch["impression"], batch["scores"], batch["mask"], strict=True
        ):
            k = position[int(impression)]
            scores[offsets[k] : offsets[k + 1]] = row[mask].numpy()
    return scores
