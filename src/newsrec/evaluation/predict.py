"""Predicting an unlabeled test split: the leaderboard's prediction.zip, and where the data
keeps the hidden clicks (the synthetic worlds' truth.txt) what the leaderboard would score.

Memory stays bounded on MIND-large's test split (2.4M impressions, 87M candidates): each
batch's scores go straight into one flat float32 array in behaviors.tsv order
(`SplitScores`, a Lightning prediction writer), not into a list of padded batches; ranks,
the text of the file and the metrics are then computed a few million candidates at a time.
Under DDP each rank predicts its own share of the impressions; rank 0 gathers the shares
and writes the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from newsrec.constants import METRICS
from newsrec.data.datamodule import MindDataModule
from newsrec.evaluation.beyond import BeyondAccuracyCallback
from newsrec.evaluation.ebnerd_submission import EbnerdSubmission
from newsrec.evaluation.metrics import segment_metrics
from newsrec.evaluation.radio_callback import RadioCallback
from newsrec.evaluation.score import truth_labels
from newsrec.evaluation.slices import SliceCallback
from newsrec.evaluation.submission import ranks_from_scores, write_prediction
from newsrec.models.module import NewsRecModule


class SplitScores(BasePredictionWriter):
    """The scores of every candidate of a split, flat in behaviors.tsv order, filled batch
    by batch from `predict_step`'s outputs (NaN where nothing was predicted)."""

    def __init__(self, impression_ids: np.ndarray, offsets: np.ndarray) -> None:
        super().__init__(write_interval="batch")
        self.offsets = np.asarray(offsets, dtype=np.int64)
        ids = np.asarray(impression_ids)
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self.scores = np.full(int(self.offsets[-1]), np.nan, dtype=np.float32)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        impression = prediction["impression"].numpy()
        position = self._order[np.searchsorted(self._sorted_ids, impression)]  # [B]
        row, column = prediction["mask"].numpy().nonzero()
        self.scores[self.offsets[position][row] + column] = prediction["scores"].numpy()[
            row, column
        ]

    def gather(self, trainer: pl.Trainer) -> np.ndarray | None:
        """Every rank's share of the scores, on rank 0; None on the other ranks."""
        if trainer.world_size == 1:
            return self.scores
        filled = np.flatnonzero(~np.isnan(self.scores))
        parts = [None] * trainer.world_size if trainer.global_rank == 0 else None
        torch.distributed.gather_object((filled, self.scores[filled]), parts, dst=0)
        if trainer.global_rank != 0:
            return None
        for where, values in parts:
            self.scores[where] = values
        return self.scores


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
    offsets = np.asarray(split.candidate_offsets)
    collector = SplitScores(np.asarray(split.impression_id), offsets)
    trainer.callbacks.append(collector)
    try:
        trainer.predict(
            module, datamodule=datamodule, ckpt_path=ckpt_path, return_predictions=False
        )
    finally:
        trainer.callbacks.remove(collector)
    scores = collector.gather(trainer)
    if scores is None:
        return {}  # rank 0 writes the submission
    predicted = ~np.isnan(scores[offsets[:-1]])  # all or none of an impression's candidates
    metrics: dict = {}
    ebnerd = EbnerdSubmission.of(datamodule.paths)  # EB-NeRD: predictions.zip, its own truth
    if predicted.all():
        ranks = ranks_from_scores(scores, offsets)
        if ebnerd is not None:
            target = ebnerd.write(out, ranks, offsets, progress=_progress(trainer))
        else:
            target = write_prediction(
                out / "prediction.zip",
                np.asarray(split.impression_id),
                scores,
                offsets,
                progress=_progress(trainer),
                ranks=ranks,
            )
        print(f"leaderboard submission written to {target}", flush=True)
        metrics["prediction"] = str(target)
    elif trainer.fast_dev_run:  # a debug run predicts one batch: scored, but no submission
        print("fast_dev_run: no prediction.zip (only part of the split was predicted)")
        ranks = None
    else:
        raise RuntimeError(f"{int((~predicted).sum())} impressions received no prediction")
    for callback in trainer.callbacks:  # the lists' beyond-accuracy metrics
        if isinstance(callback, BeyondAccuracyCallback | RadioCallback):
            metrics.update(callback.results)
    truth, labels = Path(datamodule.paths.test or "") / "truth.txt", None
    if datamodule.test_split == "test" and ebnerd is not None:
        labels = ebnerd.hidden_labels(offsets)  # python -m newsrec.evaluation.ebnerd_submission
    elif datamodule.test_split == "test" and truth.is_file():
        # `python -m newsrec.evaluation.score truth.txt prediction.zip` gives the same figures.
        labels = truth_labels(truth, np.asarray(split.impression_id), offsets)
    if labels is not None:
        slicer = next((c for c in trainer.callbacks if isinstance(c, SliceCallback)), None)
        metrics.update(_hidden_label_metrics(labels, split, scores, predicted, ranks, slicer))
    return metrics


def _progress(trainer: pl.Trainer) -> bool:
    """Draw progress bars where the trainer draws its own."""
    return trainer.progress_bar_callback is not None


def _hidden_label_metrics(
    labels: np.ndarray,
    split,
    scores: np.ndarray,
    predicted: np.ndarray,
    ranks: np.ndarray | None,
    slicer: SliceCallback | None = None,
) -> dict:
    """Test metrics from the hidden clicks `labels`, scored from the ranks as the leaderboard scores a
    submission (ties broken by candidate order); the oracle ranks by the true click
    probability. Only the `predicted` impressions count (all of them but in a debug run)."""
    offsets = np.asarray(split.candidate_offsets)
    if not predicted.all():  # fast_dev_run: keep the impressions it predicted
        keep = np.repeat(predicted, np.diff(offsets))
        offsets = np.concatenate([[0], np.cumsum(np.diff(offsets)[predicted])])
        scores, labels = scores[keep], labels[keep]
        truth_p = None if split.truth is None else np.asarray(split.truth)[keep]
        ranks = ranks_from_scores(scores, offsets)
    else:
        truth_p = split.truth
    reciprocal = 1.0 / ranks.astype(np.float32)
    result = segment_metrics(reciprocal, labels, offsets)
    metrics = {f"test/{name}": float(result[name]) for name in METRICS}
    if slicer is not None:  # results by slice (newsrec.evaluation.slices)
        kept = np.flatnonzero(predicted)
        metrics.update(slicer.flat(split, reciprocal, labels, offsets, kept, ranks))
    if truth_p is not None:  # the oracle: ranking by the true click probability
        oracle = segment_metrics(truth_p, labels, offsets)
        metrics.update({f"test/oracle_{name}": float(oracle[name]) for name in METRICS})
    return metrics
