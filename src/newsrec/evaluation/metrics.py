"""MIND's official per-impression metrics, computed for all impressions at once.

The leaderboard (and every paper that reports on MIND) scores each impression on its own and
then takes the plain mean over impressions; see docs/mind_format.md. A single AUC
pooled over all candidates is a different, incomparable number, so nothing here pools.

Edge cases, decided once for the whole project:

- An impression whose labels are a single class (all 0 or all 1) has no AUC (sklearn raises):
  it is left out of the AUC mean and counted in ``auc_skipped``.
- An impression without a click gives 0/0 for MRR and nDCG in the official formulas: it is
  left out of those means too ("impressions with no labels are skipped"). An impression in
  which every candidate was clicked does count for MRR and nDCG (both are well defined).
- Ranking ties (MRR, nDCG): the official scorer orders candidates by
  ``np.argsort(y_score)[::-1]``, whose order among equal scores depends on numpy's sort
  algorithm. We use the stable version of that expression: among equal scores, the entry that
  comes *later* in the input ranks higher. AUC needs no rule: ties count one half. Ties never
  arise on the leaderboard itself, which scores 1/rank of distinct ranks. Note that
  :func:`newsrec.evaluation.submission.ranks_from_scores` gives the *earlier* candidate the better rank,
  so only when a model's scores tie across a click can the metrics of its raw scores and
  those of its submission file differ.

Speed: one stable sort of an int64 key packing (impression, float32 score) (two sorts when
the scores need float64 or the ids span 2**31 or more), torch's radix sort, then per-click
segment sums; no Python loop runs per impression.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from newsrec.constants import METRICS
from newsrec.data.ragged import row_chunks

NDCG_CUTOFFS = (5, 10)


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # numpy has no bfloat16; float32 holds half precision exactly
        return x.numpy()
    return np.asarray(x)


def _descending_key(scores: np.ndarray) -> np.ndarray:
    """int64 keys whose ascending order is the descending order of the float scores.

    Integer keys let torch use its radix sort, several times faster than a float sort.
    """
    # + 0.0 turns -0.0 into +0.0: they compare equal as floats and must share a key.
    bits = (scores.astype(np.float64) + 0.0).view(np.int64)
    # Negative floats: flip all bits but the sign, so that larger magnitude sorts lower.
    ascending = bits ^ ((bits >> 63) & np.int64(0x7FFF_FFFF_FFFF_FFFF))
    return ~ascending  # ~x = -x - 1 reverses the order without overflow


def _packed_key(scores: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
    """One int64 key = (group code, descending float32 score), or None if it does not fit.

    Model scores are float32 and impression ids are small, so a single sort usually does.
    """
    scores32 = scores.astype(np.float32)
    low, high = int(codes.min()), int(codes.max())
    if high - low >= 2**31 or (scores.dtype != np.float32 and not (scores32 == scores).all()):
        return None
    bits = (scores32 + np.float32(0.0)).view(np.int32)
    ascending = bits ^ ((bits >> 31) & np.int32(0x7FFF_FFFF))  # as in _descending_key
    descending = np.int64(2**31 - 1) - ascending.astype(np.int64)  # in [0, 2**32)
    return ((codes - low) << 32) | descending


def _group_codes(groups: np.ndarray) -> np.ndarray:
    """int64 codes that order like the group ids (any sortable dtype, e.g. strings)."""
    if np.issubdtype(groups.dtype, np.integer) or groups.dtype == np.bool_:
        return groups.astype(np.int64, copy=False)
    return np.unique(groups, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    """True where a run of equal keys begins."""
    new = np.empty(sorted_keys.shape[0], dtype=bool)
    new[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    return new


def _sort_groups_by_score(
    scores: np.ndarray, groups: np.ndarray, later_first_on_ties: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, new_group, new_tie): the permutation of :func:`group_score_order`, and where,
    in that order, a group and a run of tied scores within a group begin. Read off the sorted
    keys, which spares gathering the scores and groups into the new order."""
    n = scores.shape[0]
    codes = _group_codes(groups)
    if later_first_on_ties:  # a stable sort of the reversed input puts later entries first
        scores, codes = scores[::-1], codes[::-1]
    packed = _packed_key(scores, codes)
    if packed is not None:
        values, order = torch.sort(torch.from_numpy(packed), stable=True)
        values = values.numpy()
        new_group, new_tie = _starts(values >> 32), _starts(values)
    else:  # two stable sorts: by score, then by group
        key, by_score = torch.sort(torch.from_numpy(_descending_key(scores)), stable=True)
        grouped = torch.from_numpy(codes.copy()).index_select(0, by_score)
        grouped, by_group = torch.sort(grouped, stable=True)
        order = by_score.index_select(0, by_group)
        new_group = _starts(grouped.numpy())
        new_tie = new_group | _starts(key.index_select(0, by_group).numpy())
    order = order.numpy()
    return (n - 1 - order if later_first_on_ties else order), new_group, new_tie


def group_score_order(
    scores: np.ndarray, groups: np.ndarray, *, later_first_on_ties: bool
) -> np.ndarray:
    """Permutation that groups entries by ``groups`` (ascending) and sorts each group by
    descending score; among equal scores the earlier entry comes first, or the later one if
    ``later_first_on_ties``. Fully deterministic: the tie rule is part of the metric's
    definition, so it may not depend on a sort algorithm's whims.
    """
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return _sort_groups_by_score(scores, groups, later_first_on_ties)[0]


def _empty_result() -> dict[str, float]:
    result: dict[str, float] = dict.fromkeys(METRICS, math.nan)
    result.update(num_impressions=0, auc_skipped=0)
    return result


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].mean()) if keep.any() else math.nan


def impression_metrics(scores: Any, labels: Any, impression_ids: Any) -> dict[str, float]:
    """AUC, MRR, nDCG@5 and nDCG@10 of each impression, averaged over impressions.

    Args:
        scores: float [P], the model's score of each (impression, candidate) pair.
        labels: [P], 1 click, 0 no click (bool, int or float); padding must be removed first.
        impression_ids: [P], the impression of each pair. Rows may come in any order; the
            order only matters to break ties in score (see the module docstring).

    Numpy arrays or torch tensors. Returns ``auc``, ``mrr``, ``ndcg@5``, ``ndcg@10`` (NaN
    when no impression qualifies), ``num_impressions`` (distinct impressions seen) and
    ``auc_skipped`` (single-class impressions, left out of the AUC mean; those without a
    click are left out of MRR and nDCG as well).
    """
    s, y, imp = (_as_numpy(a) for a in (scores, labels, impression_ids))
    if not (s.ndim == y.ndim == imp.ndim == 1) or not (s.shape == y.shape == imp.shape):
        raise ValueError(
            "impression_metrics wants three flat arrays of the same length, got shapes "
            f"{s.shape}, {y.shape}, {imp.shape}"
        )
    if s.size == 0:
        return _empty_result()
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError("labels must be 0 or 1 (drop padding, label -1, before scoring)")

    values, has_auc, has_click = _per_impression(s, y, imp)
    return {
        "auc": _mean(values["auc"], has_auc),
        "mrr": _mean(values["mrr"], has_click),
        "ndcg@5": _mean(values["ndcg@5"], has_click),
        "ndcg@10": _mean(values["ndcg@10"], has_click),
        "num_impressions": int(has_click.shape[0]),
        "auc_skipped": int((~has_auc).sum()),
    }


def _per_impression(
    s: np.ndarray, y: np.ndarray, imp: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Each impression's metrics (ordered by impression id), whether it has an AUC (a click
    and a non-click) and whether it has a click."""
    order, new_imp, new_tie = _sort_groups_by_score(s, imp, later_first_on_ties=True)
    clicked_mask = np.take(y != 0, order)
    n = order.shape[0]

    # Segments: one per impression, its entries by descending score. Only clicked entries
    # contribute to any of the sums below, so the work past the sort is per click.
    starts = np.flatnonzero(new_imp)
    ends = np.append(starts[1:], n)  # exclusive
    num = starts.shape[0]
    clicked = np.flatnonzero(clicked_mask)
    seg = np.searchsorted(starts, clicked, side="right") - 1  # impression of each click
    rank = clicked - starts[seg] + 1  # 1 = top of its impression
    clicks = np.bincount(seg, minlength=num)
    non_clicks = (ends - starts) - clicks
    has_click = clicks > 0

    def per_impression(weights: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.bincount(seg, weights=weights, minlength=num) / denominator

    # MRR = sum over clicks of 1/rank, divided by the number of clicks.
    values = {"mrr": per_impression(1.0 / rank, clicks)}

    # nDCG@k, gains 2^y - 1 (= 1 for a click), discounts log2(rank + 1); the ideal DCG puts
    # all clicks first, so it is the sum of the first min(clicks, k) discounts.
    discount = 1.0 / np.log2(rank + 1.0)
    for k in NDCG_CUTOFFS:
        ideal_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
        values[f"ndcg@{k}"] = per_impression(
            discount * (rank <= k), ideal_prefix[np.minimum(clicks, k)]
        )

    # AUC = P(score of a click > score of a non-click), ties counting one half: each click
    # wins over the non-clicks below its group of tied scores and half of those in the group.
    tie_starts = np.flatnonzero(new_tie)
    tie = np.searchsorted(tie_starts, clicked, side="right") - 1
    tie_begin, tie_end = tie_starts[tie], np.append(tie_starts[1:], n)[tie]
    non_clicks_before = np.concatenate([[0], np.cumsum(~clicked_mask)])  # in entries [0, i)
    below = non_clicks_before[ends[seg]] - non_clicks_before[tie_end]
    tied = non_clicks_before[tie_end] - non_clicks_before[tie_begin]
    values["auc"] = per_impression(2 * below + tied, 2.0 * clicks * non_clicks)
    return values, has_click & (non_clicks > 0), has_click


def segment_metrics(
    scores: np.ndarray, labels: np.ndarray, offsets: np.ndarray, max_entries: int = 4_000_000
) -> dict[str, float]:
    """:func:`impression_metrics` of impressions stored one after another (impression k is
    ``scores[offsets[k]:offsets[k + 1]]``), in memory bounded by `max_entries` candidates at
    a time: MIND-large's test split has 87M candidates, which sorted at once need ~5 GiB.

    Ties follow :func:`impression_metrics` (the later candidate ranks higher); an impression
    with no candidate is not counted.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    sums = dict.fromkeys(METRICS, 0.0)
    counts = {"auc": 0, "click": 0, "impressions": 0}
    for first, last in row_chunks(offsets, max_entries):
        begin, end = int(offsets[first]), int(offsets[last])
        if end == begin:
            continue
        owner = np.repeat(np.arange(first, last), np.diff(offsets[first : last + 1]))
        s, y = _as_numpy(scores[begin:end]), _as_numpy(labels[begin:end])
        if np.isnan(s).any():
            raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
        values, has_auc, has_click = _per_impression(s, y, owner)
        for name in METRICS:
            sums[name] += float(values[name][has_auc if name == "auc" else has_click].sum())
        counts["auc"] += int(has_auc.sum())
        counts["click"] += int(has_click.sum())
        counts["impressions"] += int(has_click.shape[0])
    result = {}
    for name in METRICS:
        count = counts["auc" if name == "auc" else "click"]
        result[name] = sums[name] / count if count else math.nan
    result.update(
        num_impressions=counts["impressions"],
        auc_skipped=counts["impressions"] - counts["auc"],
    )
    return result


class ImpressionMetrics(Metric):
    """:func:`impression_metrics` over a whole evaluation epoch, synced across DDP processes.

    Keeps every valid (score, label, impression, position) entry, so the per-impression
    metrics can be computed once all of an impression's candidates have been seen, whatever
    process or batch they came through. Under DDP, the evaluation batch sampler
    (`newsrec.data.datamodule.EvalBatchSampler`) gives a rank a repeated batch when there are
    fewer batches than ranks; entries are therefore deduplicated on (impression, position)
    in :meth:`compute` so that no candidate counts twice.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    scores: list[Tensor]
    labels: list[Tensor]
    impressions: list[Tensor]
    positions: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("impressions", default=[], dist_reduce_fx="cat")
        self.add_state("positions", default=[], dist_reduce_fx="cat")

    def update(
        self,
        scores: Tensor,
        labels: Tensor,
        impression: Tensor,
        positions: Tensor | None = None,
    ) -> None:
        """Add one batch of impressions.

        Args:
            scores: [B, C] score of each candidate.
            labels: [B, C] 1 click, 0 no click, -1 padding (ignored).
            impression: [B] global impression id of each row.
            positions: [B, C] position of each candidate within its impression; defaults to
                the column index, i.e. one row holds one whole impression.
        """
        if (
            scores.shape != labels.shape
            or scores.ndim != 2
            or impression.shape != scores[:, 0].shape
        ):
            raise ValueError(
                "ImpressionMetrics.update wants scores [B, C], labels [B, C], impression [B]; "
                f"got {tuple(scores.shape)}, {tuple(labels.shape)}, {tuple(impression.shape)}"
            )
        valid = labels >= 0
        if positions is None:
            positions = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
        self.scores.append(scores.detach()[valid].float())
        self.labels.append(labels[valid].to(torch.int8))
        self.impressions.append(impression[:, None].expand_as(scores)[valid].long())
        self.positions.append(positions[valid].long())

    def compute(self) -> dict[str, Tensor]:
        """The metrics of :func:`impression_metrics` (float64 scalars) over deduplicated
        entries, ordered by (impression, position) so that the tie rule follows candidate
        order and not the order batches arrived in."""
        states = (self.scores, self.labels, self.impressions, self.positions)
        # After a DDP sync a state is one tensor; before, a list of tensors (empty if unused).
        if isinstance(self.scores, list) and not self.scores:
            result = _empty_result()
        else:
            scores, labels, impressions, positions = (dim_zero_cat(s).cpu() for s in states)
            by_position = torch.sort(positions, stable=True).indices
            by_impression = torch.sort(impressions[by_position], stable=True).indices
            order = by_position[by_impression]
            impressions, positions = impressions[order], positions[order]
            first = torch.ones_like(order, dtype=torch.bool)
            first[1:] = (impressions[1:] != impressions[:-1]) | (positions[1:] != positions[:-1])
            keep = order[first]
            result = impression_metrics(scores[keep], labels[keep], impressions[first])
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in result.items()}
