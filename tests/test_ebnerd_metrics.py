"""EB-NeRD's metrics are the toolkit's: checked against its definitions, written out here.

The reference functions below follow ebrec's `evaluation/metrics/_ranking.py` and
`metrics_protocols.py` definition by definition (per impression: order the candidates by
`np.argsort(scores)[::-1]`; MRR = sum(y / rank) / sum(y); DCG@k with gains 2^y - 1 and
discounts log2(rank + 1), k cut to the impression's length, nDCG = DCG / DCG of the ideal
order; AUC = sklearn's roc_auc_score, ties one half; then the plain mean over impressions).
newsrec's metrics and the EB-NeRD scorer must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from newsrec.evaluation.ebnerd_submission import metrics_from_ranks
from newsrec.evaluation.metrics import impression_metrics
from newsrec.evaluation.submission import ranks_from_scores


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(scores, kind="stable")[::-1]  # the toolkit's order (stable sort)


def _dcg(y: np.ndarray, s: np.ndarray, k: int) -> float:
    k = min(len(y), k)
    gains = 2 ** y[_order(s)[:k]] - 1
    return float(np.sum(gains / np.log2(np.arange(k) + 2)))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def toolkit_metrics(impressions: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    out = {}
    out["auc"] = np.mean([_auc(y, s) for y, s in impressions])
    mrr = []
    for y, s in impressions:
        ranked = y[_order(s)]
        mrr.append(np.sum(ranked / (np.arange(len(y)) + 1)) / np.sum(y))
    out["mrr"] = np.mean(mrr)
    for k in (5, 10):
        out[f"ndcg@{k}"] = np.mean(
            [_dcg(y, s, k) / _dcg(y, y.astype(float), k) for y, s in impressions]
        )
    return out


def _impressions(seed: int, ties: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(60):
        n = int(rng.integers(2, 30))
        y = (rng.random(n) < 0.2).astype(np.int64)
        y[rng.integers(n)] = 1  # every impression has a click ...
        if y.all():
            y[0] = 0  # ... and a non-click, so the toolkit's AUC is defined
        s = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
        out.append((y, s))
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_newsrec_metrics_equal_the_toolkits_definitions(ties):
    impressions = _impressions(1, ties)
    expected = toolkit_metrics(impressions)
    scores = np.concatenate([s for _, s in impressions])
    labels = np.concatenate([y for y, _ in impressions])
    ids = np.repeat(np.arange(len(impressions)), [len(y) for y, _ in impressions])
    got = impression_metrics(scores, labels, ids)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_the_scorer_from_ranks_equals_the_toolkit_on_one_over_rank():
    impressions = _impressions(2, ties=False)
    scores = np.concatenate([s for _, s in impressions])
    labels = np.concatenate([y for y, _ in impressions])
    offsets = np.concatenate([[0], np.cumsum([len(y) for y, _ in impressions])])
    ranks = ranks_from_scores(scores, offsets)
    # the submission holds ranks; CodaBench scores 1 / rank: the same ordering, no ties
    bounds = zip(offsets[:-1], offsets[1:], strict=True)
    as_scored = [(y, 1.0 / ranks[a:b]) for (y, _), (a, b) in zip(impressions, bounds, strict=True)]
    expected = toolkit_metrics(as_scored)
    got = metrics_from_ranks(ranks, labels, offsets)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
    assert got["num_impressions"] == 60


def test_a_known_impression():
    # clicks at ranks 2 and 3 of 4: MRR (1/2 + 1/3) / 2; AUC: 2 of the 4 pairs right
    ranks, labels, offsets = np.array([1, 2, 3, 4]), np.array([0, 1, 1, 0]), np.array([0, 4])
    got = metrics_from_ranks(ranks, labels, offsets)
    assert got["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert got["auc"] == pytest.approx(0.5)
    ideal = 1 + 1 / np.log2(3)
    assert got["ndcg@5"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / ideal)
