"""Training samples as in the NRMS paper (newsrec.data.datamodule has the whole story).

One sample per click of the fitted part of train, with K non-clicked news of the same
impression drawn afresh every epoch; a batch is built by numpy slicing (`__getitems__`), a
rank's share of the shuffled samples at a time (`TrainBatchSampler`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from newsrec.data.arrays import SplitArrays
from newsrec.data.ragged import lengths_to_offsets, pad_rows


@dataclass
class _Batch:
    """What a batch sampler yields: the sample indices plus what seeds their negatives."""

    indices: np.ndarray
    epoch: int
    number: int


class TrainSamples(Dataset):
    """Click samples of the fitted part of train; `__getitems__` builds a whole batch."""

    def __init__(
        self, split: SplitArrays, rows: np.ndarray, npratio: int, history_len: int, seed: int
    ):
        self.split, self.npratio, self.history_len, self.seed = split, npratio, history_len, seed
        offsets = split.candidate_offsets
        labels = np.asarray(split.labels)
        candidates = np.asarray(split.candidates)
        lengths = np.diff(offsets)
        impression_of = np.repeat(np.arange(len(lengths)), lengths)
        in_rows = np.zeros(len(lengths), dtype=bool)
        in_rows[rows] = True
        take = in_rows[impression_of]
        # Non-clicks of each impression, as one ragged array.
        negative = take & (labels == 0)
        self.neg_values = candidates[negative]
        self.neg_offsets = lengths_to_offsets(
            np.bincount(impression_of[negative], minlength=len(lengths))
        )
        neg_count = np.diff(self.neg_offsets)
        click = take & (labels == 1)
        usable = click & (neg_count[impression_of] > 0)
        self.dropped = int(click.sum() - usable.sum())
        self.short = int((neg_count[impression_of[usable]] < npratio).sum())
        self.impression = impression_of[usable]
        self.clicked = candidates[usable].astype(np.int64)

    def __len__(self) -> int:
        return len(self.clicked)

    def __getitems__(self, key: _Batch) -> dict[str, torch.Tensor]:
        idx, k = key.indices, self.npratio
        imp = self.impression[idx]
        rng = np.random.default_rng((self.seed, key.epoch, key.number))
        start, count = self.neg_offsets[imp], self.neg_offsets[imp + 1] - self.neg_offsets[imp]
        # K distinct non-clicks where there are enough: the K smallest of random keys.
        width = max(int(count.max()), k)
        keys = rng.random((len(idx), width))
        keys[np.arange(width)[None, :] >= count[:, None]] = 2.0
        pick = np.argsort(keys, axis=1)[:, :k]
        # Fewer than K non-clicks: fill the missing slots by sampling with replacement.
        short = pick >= count[:, None]
        pick[short] = (rng.random(short.sum()) * np.repeat(count, short.sum(1))).astype(np.int64)
        negatives = self.neg_values[start[:, None] + pick]
        target = rng.integers(0, k + 1, size=len(idx))
        candidates = np.insert(negatives, 0, 0, axis=1)
        rows = np.arange(len(idx))
        candidates[rows, 0] = candidates[rows, target]
        candidates[rows, target] = self.clicked[idx]
        history, history_mask = pad_rows(
            self.split.history_offsets, self.split.history, imp, self.history_len
        )
        return {
            "history": torch.from_numpy(history),
            "history_mask": torch.from_numpy(history_mask),
            "candidates": torch.from_numpy(candidates.astype(np.int64)),
            "candidate_mask": torch.ones(candidates.shape, dtype=torch.bool),
            "user": torch.from_numpy(np.asarray(self.split.user)[imp]),
            "target": torch.from_numpy(target),
        }


class TrainBatchSampler:
    """Shuffled batches of sample indices, a disjoint share per rank, reshuffled each epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        for number in range(len(self)):
            # Batch `number` of this rank is global batch number * world_size + rank.
            b = number * self.world_size + self.rank
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield _Batch(indices, self.epoch, b)
