"""RADio: rank-aware divergence metrics of normative diversity, vectorised over lists.

Vrijenhoek, Bénédict, Gutierrez Granada, Odijk, de Rijke, "RADio - Rank-Aware Divergence
Metrics to Measure Normative Diversity in News Recommendations", RecSys 2022 (extended as
RADio*, ACM TORS 2025). Every metric is a divergence D(P, Q*) between a *context*
distribution P and the rank-aware distribution Q* of a recommendation list over the same
categories x (eq. 1-3 of the paper):

    Q*(x) = sum_i w_{R_i} q(x | i) / sum_i w_{R_i}

over the list's news i at rank R_i, q(x | i) the news' own distribution over x (a category is
one-hot; entity types are the share of its mentions; news without any x is left out), and
w_R the rank discount: `mrr` 1 / R (the paper's default, as in MRR), `ndcg` 1 / log2(1 + R),
or `none` (1: the rank-unaware variant). Both distributions are smoothed towards each other
with alpha = 0.001, as RADio's code does (P~ = (1 - a) P + a Q*, and the same for Q*), and

    KL(P, Q*) = sum_x P~(x) log2(P~(x) / Q*~(x))                        in [0, inf)
    JS(P, Q*) = 1/2 KL(P~, M) + 1/2 KL(Q*~, M),  M = (P~ + Q*~) / 2     in [0, 1]

(base 2; RADio's code reports the square root of JS, the JS distance; JS itself is the
paper's formula and is given here). The metrics (section 4 of the paper; `radio_values`):

| metric                        | x                          | context P                          |
|-------------------------------|----------------------------|------------------------------------|
| calibration (category, subc.) | the news' (sub)category    | the user's history (most recent    |
|                               |                            | click at rank 1, same discount)     |
| calibration (complexity)      | bin of Flesch reading ease | the history; 5 equal-width bins     |
|                               |                            | between its least and most complex |
| fragmentation                 | subcategory (or category)  | another user's list, also rank-aware|
| activation                    | bin of abs(VADER sentiment)| the impression's candidate pool,    |
|                               |                            | unweighted; 5 bins over its range   |
| representation                | entity type of mentions    | the candidate pool, unweighted      |
| alternative voices            | minority / majority person | the candidate pool, unweighted      |

A list (or context) with no x at all has no distribution: its value is NaN and left out of
the means. Everything is [L, n] tensor algebra; no Python loop runs per list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

DISCOUNTS = ("mrr", "ndcg", "none")
DIVERGENCES = ("js", "kl")


@dataclass(frozen=True)
class RadioSettings:
    """The choices the paper leaves open, with its defaults."""

    divergence: str = "js"  # js (bounded, symmetric; the paper's choice) or kl
    discount: str = "mrr"  # rank discount of lists: mrr (1/R), ndcg (1/log2(1+R)), none
    alpha: float = 0.001  # smoothing of both distributions towards each other (RADio's code)
    bins: int = 5  # equal-width bins of complexity and sentiment (RADio's KBinsDiscretizer)

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ValueError(
                f"RADio divergence={self.divergence!r}: choose one of {', '.join(DIVERGENCES)}"
            )
        if self.discount not in DISCOUNTS:
            raise ValueError(
                f"RADio discount={self.discount!r}: choose one of {', '.join(DISCOUNTS)}"
            )
        if not 0.0 <= self.alpha < 0.5 or self.bins < 1:
            raise ValueError(
                f"RADio alpha={self.alpha} must be in [0, 0.5) and bins={self.bins} at least 1"
            )


def rank_weights(valid: Tensor, discount: str) -> Tensor:
    """w_R of each entry [L, n] (R = 1 for the first valid entry of a row), 0 where invalid."""
    rank = valid.cumsum(1, dtype=torch.float32)
    if discount == "mrr":
        weight = 1.0 / rank
    elif discount == "ndcg":
        weight = 1.0 / torch.log2(rank + 1.0)
    else:
        weight = torch.ones_like(rank)
    return weight * valid


def code_distribution(codes: Tensor, weights: Tensor, size: int) -> Tensor:
    """Distribution [L, size] of integer codes [L, n] in [0, size) (any value where the weight
    is 0) weighted by `weights` [L, n]; a row of zeros where no weight is left."""
    out = torch.zeros(codes.shape[0], size, dtype=torch.float32, device=codes.device)
    out.scatter_add_(1, codes.clamp(0, size - 1).long(), weights.float())
    return _normalise(out)


def local_codes(codes: Tensor, valid: Tensor) -> Tensor:
    """Codes [L, n] relabelled per row to 0..n-1, equal codes of a row sharing a label: a
    divergence then runs over at most n values per row instead of every category (MIND has
    ~280 subcategories; a history and a list hold at most 60)."""
    ordered, order = codes.masked_fill(~valid, torch.iinfo(codes.dtype).max).sort(dim=1)
    first = torch.ones_like(valid)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return torch.empty_like(order).scatter_(1, order, first.cumsum(1) - 1)


def categorical_divergence(
    codes_p: Tensor, weights_p: Tensor, codes_q: Tensor, weights_q: Tensor,
    settings: RadioSettings,
) -> Tensor:  # fmt: skip
    """D(P, Q) [L] of two weighted code lists per row ([L, n] and [L, m], weight 0 = absent)."""
    both = local_codes(torch.cat([codes_p, codes_q], 1), torch.cat([weights_p, weights_q], 1) > 0)
    width, n = both.shape[1], codes_p.shape[1]
    p = code_distribution(both[:, :n], weights_p, width)
    q = code_distribution(both[:, n:], weights_q, width)
    return divergence(p, q, settings)


def share_table(counts: Tensor) -> Tensor:
    """q(x | i) [N, X] of per-news counts [N, X]: each row's share, zeros for a news without."""
    counts = counts.float()
    total = counts.sum(-1, keepdim=True)
    return torch.where(total > 0, counts / total.clamp(min=1e-30), 0.0)


def mixture_distribution(rows: Tensor, weights: Tensor, shares: Tensor) -> Tensor:
    """Q*(x) = sum_i w_i q(x|i) / sum_i w_i over news rows [L, n] with weights [L, n] and
    q = `shares` [N, X] (`share_table`); a news without any x (a zero row) does not take part,
    nor its weight. One `embedding_bag`: no [L, n, X] tensor is built."""
    mass = F.embedding_bag(rows, shares, per_sample_weights=weights.float(), mode="sum")
    return _normalise(mass)


def _normalise(mass: Tensor) -> Tensor:
    total = mass.sum(-1, keepdim=True)
    return torch.where(total > 0, mass / total.clamp(min=1e-30), 0.0)


def bin_codes(values: Tensor, low: Tensor, high: Tensor, bins: int) -> Tensor:
    """Equal-width bin [L, n] of each value between its row's `low` and `high` [L, 1]
    (values outside go to the first or last bin; a row with low == high is one bin)."""
    width = (high - low).clamp(min=0)
    scaled = torch.where(width > 0, (values - low) / width.clamp(min=1e-30), 0.0) * bins
    return torch.nan_to_num(scaled.floor(), nan=0.0).clamp(0, bins - 1).long()


def row_range(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(min, max) [L, 1] of each row's valid values (0, 0 for a row without any)."""
    low = torch.where(valid, values, torch.inf).amin(1, keepdim=True)
    high = torch.where(valid, values, -torch.inf).amax(1, keepdim=True)
    empty = ~valid.any(1, keepdim=True)
    return low.masked_fill(empty, 0.0), high.masked_fill(empty, 0.0)


def divergence(p: Tensor, q: Tensor, settings: RadioSettings) -> Tensor:
    """D(P, Q) [L] of distributions [L, X] (see the module doc); NaN where either is empty."""
    a = settings.alpha
    defined = (p.sum(-1) > 0) & (q.sum(-1) > 0)
    p, q = (1 - a) * p + a * q, (1 - a) * q + a * p
    if settings.divergence == "kl":
        value = _kl(p, q)
    else:
        m = (p + q) / 2
        value = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    return torch.where(defined, value.clamp(min=0.0), torch.nan)


def _kl(p: Tensor, q: Tensor) -> Tensor:
    """sum_x p log2(p / q), terms with p = 0 counting 0 (q > 0 wherever p > 0 here)."""
    return torch.xlogy(p, p / q.clamp(min=1e-30)).sum(-1) / math.log(2)


# -- the metrics, one list per row ------------------------------------------------------------
def calibration(
    list_codes: Tensor, list_valid: Tensor, history_codes: Tensor, history_valid: Tensor,
    settings: RadioSettings,
) -> Tensor:  # fmt: skip
    """Calibration [L] over categorical codes; histories are given most recent click first."""
    return categorical_divergence(
        history_codes, rank_weights(history_valid, settings.discount),
        list_codes, rank_weights(list_valid, settings.discount), settings,
    )  # fmt: skip


def calibration_complexity(
    list_values: Tensor, list_valid: Tensor, history_values: Tensor, history_valid: Tensor,
    settings: RadioSettings,
) -> Tensor:  # fmt: skip
    """Calibration [L] of text complexity, binned between the history's extremes."""
    list_valid = list_valid & ~list_values.isnan()
    history_valid = history_valid & ~history_values.isnan()
    low, high = row_range(history_values, history_valid)
    bins = settings.bins
    history = bin_codes(history_values, low, high, bins)
    listed = bin_codes(list_values, low, high, bins)
    p = code_distribution(history, rank_weights(history_valid, settings.discount), bins)
    q = code_distribution(listed, rank_weights(list_valid, settings.discount), bins)
    return divergence(p, q, settings)


def activation(
    list_values: Tensor, list_valid: Tensor, pool_values: Tensor, pool_valid: Tensor,
    settings: RadioSettings,
) -> Tensor:  # fmt: skip
    """Activation [L]: abs(sentiment) of the list against the pool, binned over the pool's
    range; the pool unweighted, the list rank-aware."""
    list_values, pool_values = list_values.abs(), pool_values.abs()
    list_valid = list_valid & ~list_values.isnan()
    pool_valid = pool_valid & ~pool_values.isnan()
    low, high = row_range(pool_values, pool_valid)
    bins = settings.bins
    p = code_distribution(bin_codes(pool_values, low, high, bins), pool_valid.float(), bins)
    listed = bin_codes(list_values, low, high, bins)
    q = code_distribution(listed, rank_weights(list_valid, settings.discount), bins)
    return divergence(p, q, settings)


def pool_divergence(
    list_rows: Tensor, list_valid: Tensor, pool_rows: Tensor, pool_valid: Tensor,
    shares: Tensor, settings: RadioSettings,
) -> Tensor:  # fmt: skip
    """Representation or alternative voices [L]: the list's news rows (rank-aware) against the
    pool's (unweighted), each news' distribution q(x | i) a row of `shares` [N, X]."""
    p = mixture_distribution(pool_rows, pool_valid.float(), shares)
    q = mixture_distribution(list_rows, rank_weights(list_valid, settings.discount), shares)
    return divergence(p, q, settings)


def fragmentation(
    codes_a: Tensor, valid_a: Tensor, codes_b: Tensor, valid_b: Tensor, settings: RadioSettings
) -> Tensor:
    """Fragmentation [P] of pairs of lists (a, b): D(Q*_a, Q*_b), both rank-aware."""
    return categorical_divergence(
        codes_a, rank_weights(valid_a, settings.discount),
        codes_b, rank_weights(valid_b, settings.discount), settings,
    )  # fmt: skip
