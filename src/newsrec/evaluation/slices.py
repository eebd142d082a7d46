"""Results by slice: AUC and nDCG@10 by history length, new vs seen user, fresh vs seen news.

A single mean AUC hides where a model is good: what a better news encoder buys shows up
mostly for users with short histories (Revisiting LMs in neural news recommendation, ECIR
2025). Keys (`test/slice/<slice>/<metric>`, each with its `impressions`):

- `history_0`, `history_1-4`, `history_5-9`, `history_10-19`, `history_20-49`, `history_50+`:
  impressions by the length of their user's history as the model reads it (the last
  `history_len` clicks, 50 by default, so 50+ holds every longer history);
- `user_new`, `user_seen`: impressions of users unseen / seen in the training impressions;
- `news_fresh`, `news_seen`: each impression's candidates cut to those never seen in the
  training split (as candidate or in a history) / seen there, ranked among themselves.

Each is the official per-impression metric (`newsrec.evaluation.metrics`, the same tie
rule) averaged over the slice's impressions; `impressions` counts those with a click (nDCG's
mean), AUC also leaves out those without a non-click. Per-impression values are computed
with one sort per batch of candidates for the whole impression and both news subsets, kept
by global impression id and gathered across DDP processes, so 2 processes give what 1 does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from newsrec.data.ragged import row_chunks, slices
from newsrec.evaluation.metrics import _as_numpy, _sort_groups_by_score

HISTORY_BINS = ((0, 0), (1, 4), (5, 9), (10, 19), (20, 49), (50, None))
SETS = ("all", "fresh", "seen")  # candidates kept: every one, never seen in training, seen
_IDEAL = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, 12)))])  # nDCG@10


def history_slice(low: int, high: int | None) -> str:
    return (
        f"history_{low}" if high == low else f"history_{low}{'+' if high is None else f'-{high}'}"
    )


def impression_values(
    scores: np.ndarray, labels: np.ndarray, owner: np.ndarray, fresh: np.ndarray, count: int
) -> np.ndarray:
    """AUC and nDCG@10 [count, 3 sets, 2] of impressions 0..count-1 from flat candidates
    (`owner` the impression of each, `fresh` whether its news was never seen in training);
    NaN where a set of an impression has no click (nDCG) or no click and non-click (AUC)."""
    if not len(scores):
        return np.full((count, len(SETS), 2), np.nan, dtype=np.float32)
    order, new_imp, new_tie = _sort_groups_by_score(scores, owner, later_first_on_ties=True)
    return _sorted_values(order, new_imp, new_tie, labels, owner, fresh, count)


def _sorted_values(order, new_imp, new_tie, labels, owner, fresh, count: int) -> np.ndarray:
    """`impression_values` of entries put in (impression, best first) `order`."""
    out = np.full((count, len(SETS), 2), np.nan, dtype=np.float32)
    clicked, fresh = np.take(labels != 0, order), np.take(fresh, order)
    impression = np.take(owner, order)[np.flatnonzero(new_imp)]
    members = (np.ones_like(fresh), fresh, ~fresh)
    for k, member in enumerate(members):
        auc, ndcg = _subset_metrics(new_imp, new_tie, clicked, member)
        out[impression, k, 0], out[impression, k, 1] = auc, ndcg
    return out


def _ranked_values(ranks, labels, sizes: np.ndarray, fresh) -> np.ndarray:
    """`impression_values` of impressions stored one after another whose candidates' ranks
    (1 = best, distinct: a submission's) are known: their order is a scatter, not a sort."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = np.repeat(np.arange(len(sizes)), sizes)
    order = np.empty(len(owner), dtype=np.int64)
    order[starts[owner] + np.asarray(ranks, dtype=np.int64) - 1] = np.arange(len(owner))
    new_imp = np.zeros(len(owner), dtype=bool)
    new_imp[starts[sizes > 0]] = True
    ties = np.ones(len(owner), dtype=bool)  # distinct ranks: every entry its own tie group
    return _sorted_values(order, new_imp, ties, labels, owner, fresh, len(sizes))


def _subset_metrics(new_imp, new_tie, clicked, member) -> tuple[np.ndarray, np.ndarray]:
    """Per impression (segments of `new_imp`, entries best first): AUC and nDCG@10 of the
    `member` entries ranked among themselves, as `metrics._per_impression` computes them."""
    n = len(new_imp)
    starts = np.flatnonzero(new_imp)
    segment = np.cumsum(new_imp) - 1
    ends = np.append(starts[1:], n)
    before = np.concatenate([[0], np.cumsum(member)])  # members in entries [0, i)
    hits = np.flatnonzero(clicked & member)
    seg = segment[hits]
    rank = before[hits + 1] - before[starts[seg]]  # 1 = the subset's best
    num = len(starts)
    clicks = np.bincount(seg, minlength=num)
    non_clicks = (before[ends] - before[starts]) - clicks
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.bincount(seg, weights=(rank <= 10) / np.log2(rank + 1.0), minlength=num)
        ndcg = np.where(clicks > 0, gain / _IDEAL[np.minimum(clicks, 10)], np.nan)
        tie_starts = np.flatnonzero(new_tie)
        tie = np.searchsorted(tie_starts, hits, side="right") - 1
        tie_end = np.append(tie_starts[1:], n)[tie]
        missed = np.concatenate([[0], np.cumsum(member & ~clicked)])
        below = missed[ends[seg]] - missed[tie_end]
        tied = missed[tie_end] - missed[tie_starts[tie]]
        wins = np.bincount(seg, weights=2 * below + tied, minlength=num)
        auc = np.where((clicks > 0) & (non_clicks > 0), wins / (2.0 * clicks * non_clicks), np.nan)
    return auc, ndcg


def flat_values(
    scores: np.ndarray,
    labels: np.ndarray,
    offsets: np.ndarray,
    fresh: np.ndarray,
    ranks: np.ndarray | None = None,
) -> np.ndarray:
    """`impression_values` of a split's impressions stored one after another (impression k
    is `scores[offsets[k]:offsets[k + 1]]`, candidates' news freshness in `fresh`), a few
    million candidates at a time (MIND-large's test split has 87M). With the candidates'
    distinct `ranks` (a submission's, which `scores` then order), no sort is needed."""
    offsets = np.asarray(offsets, dtype=np.int64)
    out = np.full((len(offsets) - 1, len(SETS), 2), np.nan, dtype=np.float32)
    for first, last in row_chunks(offsets, 4_000_000):
        begin, end = int(offsets[first]), int(offsets[last])
        sizes = np.diff(offsets[first : last + 1])
        y = _as_numpy(labels[begin:end])
        if ranks is not None:
            out[first:last] = _ranked_values(ranks[begin:end], y, sizes, fresh[begin:end])
            continue
        owner = np.repeat(np.arange(last - first), sizes)
        s = _as_numpy(scores[begin:end])
        out[first:last] = impression_values(s, y, owner, fresh[begin:end], last - first)
    return out


def aggregate(values: np.ndarray, history: np.ndarray, seen_user: np.ndarray) -> dict:
    """`slice/<slice>/<auc|ndcg@10|impressions>` of per-impression `values` [I, 3, 2]."""
    groups: dict[str, tuple[np.ndarray, int]] = {}
    for low, high in HISTORY_BINS:
        inside = (history >= low) & (history <= (high if high is not None else np.inf))
        groups[history_slice(low, high)] = (inside, 0)
    groups["user_new"], groups["user_seen"] = (~seen_user, 0), (seen_user, 0)
    everyone = np.ones(len(values), dtype=bool)
    groups["news_fresh"], groups["news_seen"] = (everyone, 1), (everyone, 2)
    result: dict[str, float] = {}
    for name, (inside, k) in groups.items():
        auc, ndcg = values[inside, k, 0], values[inside, k, 1]
        ndcg = ndcg[~np.isnan(ndcg)]
        auc = auc[~np.isnan(auc)]
        # A slice without impressions has its count (0) and no means: NaN is no JSON number.
        if len(auc):
            result[f"slice/{name}/auc"] = float(auc.astype(np.float64).mean())
        if len(ndcg):
            result[f"slice/{name}/ndcg@10"] = float(ndcg.astype(np.float64).mean())
        result[f"slice/{name}/impressions"] = float(len(ndcg))
    return result


def seen_in_training(datamodule) -> np.ndarray:
    """bool [num_news]: news rows that appear in the training split, as a candidate or in
    a history (counted a few million at a time)."""
    train = datamodule.data.splits["train"]
    seen = np.zeros(len(datamodule.data.news["title"]), dtype=bool)
    for values in (train.candidates, train.history):
        for part in slices(len(values), 1 << 22):
            seen[np.asarray(values[part])] = True
    seen[0] = False  # the padding row is no news
    return seen


class SliceMetric(Metric):
    """Per-impression values of an epoch's batches, kept by global impression id."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("impressions", "values", "history", "seen_user"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    @torch.no_grad()
    def update(
        self,
        scores: Tensor,
        labels: Tensor,
        fresh: Tensor,
        impression: Tensor,
        history: Tensor,
        seen_user: Tensor,
    ) -> None:
        """scores, labels (-1 padding), fresh [B, C]; impression, history length, seen_user [B]."""
        valid = labels >= 0
        owner = torch.arange(len(scores), device=scores.device)[:, None].expand_as(scores)
        values = impression_values(
            _as_numpy(scores[valid]),
            _as_numpy(labels[valid]),
            _as_numpy(owner[valid]),
            _as_numpy(fresh[valid]),
            len(scores),
        )
        self.values.append(torch.from_numpy(values).to(scores.device))
        self.impressions.append(impression.long())
        self.history.append(history.long())
        self.seen_user.append(seen_user.bool())

    def compute(self) -> dict[str, float]:
        if isinstance(self.impressions, list) and not self.impressions:
            return aggregate(np.zeros((0, 3, 2), np.float32), np.zeros(0), np.zeros(0, bool))
        impressions = dim_zero_cat(self.impressions).cpu()
        _, order = torch.sort(impressions, stable=True)
        first = torch.ones(len(order), dtype=torch.bool)
        first[1:] = impressions[order][1:] != impressions[order][:-1]
        keep = order[first]  # one entry per impression (a DDP sampler's repeats count once)
        states = (self.values, self.history, self.seen_user)
        values, history, seen_user = (dim_zero_cat(s).cpu()[keep].numpy() for s in states)
        return aggregate(values, history, seen_user)


class SliceCallback(pl.Callback):
    """Results by slice of a test run, logged as `test/slice/...` (metrics.json, TensorBoard).

    Reads the scores the module's test step returns (after any re-ranker) and the batch's
    labels. An unlabeled split scored against hidden clicks (the synthetic worlds' test) is
    sliced from its flat scores by `newsrec.evaluation.predict` through `flat`.
    """

    def __init__(self) -> None:
        self.metric = SliceMetric()
        self.active = False

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        self.active = getattr(datamodule, "data", None) is not None
        if self.active:
            self.fresh = ~seen_in_training(datamodule)
            self.fresh_rows = torch.from_numpy(self.fresh).to(pl_module.device)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()
        self._start(trainer, pl_module)

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self.active or not isinstance(outputs, dict) or "scores" not in outputs:
            return
        owner = batch["owner"]
        self.metric.update(
            outputs["scores"],
            batch["labels"],
            self.fresh_rows[batch["candidates"]],
            batch["impression"],
            batch["history_mask"].sum(1)[owner],
            batch["user"][owner] > 0,
        )

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        values = self.metric.compute()  # a collective under DDP: every rank
        self.metric.reset()
        logged = {f"test/{n}": torch.tensor(v, dtype=torch.float32) for n, v in values.items()}
        pl_module.log_dict(logged, sync_dist=False)

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module)

    def flat(self, split, scores, labels, offsets, kept=None, ranks=None) -> dict:
        """`test/slice/...` of a whole split's flat scores and labels (impressions `kept` of
        `split`, all of them by default; `ranks` the submission's, if known), as the
        leaderboard scores them."""
        if not self.active:
            return {}
        kept = np.arange(len(split)) if kept is None else kept
        history = np.diff(np.asarray(split.history_offsets))[kept]
        seen_user = np.asarray(split.user)[kept] > 0
        fresh = self.fresh[np.asarray(split.candidates)]
        if len(kept) != len(split):
            fresh = fresh[
                np.repeat(np.isin(np.arange(len(split)), kept), np.diff(split.candidate_offsets))
            ]
        values = flat_values(scores, labels, offsets, fresh, ranks)
        return {f"test/{n}": v for n, v in aggregate(values, history, seen_user).items()}
