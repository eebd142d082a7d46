"""Results by slice (newsrec.evaluation.slices) against a per-slice recomputation with
newsrec.evaluation.metrics.impression_metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from newsrec.evaluation.metrics import impression_metrics
from newsrec.evaluation.slices import SliceMetric, aggregate, flat_values, impression_values

IMPRESSIONS = 300


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, IMPRESSIONS)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    scores = np.round(rng.normal(size=n), 1).astype(np.float32)  # rounded: many ties
    labels = (rng.random(n) < 0.2).astype(np.int8)
    fresh = rng.random(n) < 0.5
    history = rng.choice([0, 1, 3, 4, 5, 9, 10, 19, 20, 49, 50], IMPRESSIONS)
    seen_user = rng.random(IMPRESSIONS) < 0.4
    return scores, labels, offsets, fresh, history, seen_user


def recomputed(scores, labels, offsets, fresh, history, seen_user) -> dict[str, float]:
    """Each slice's metrics by impression_metrics on exactly that slice's entries."""
    owner = np.repeat(np.arange(IMPRESSIONS), np.diff(offsets))
    every = np.ones(len(scores), dtype=bool)
    slices = {
        "history_0": (history == 0)[owner],
        "history_1-4": ((history >= 1) & (history <= 4))[owner],
        "history_5-9": ((history >= 5) & (history <= 9))[owner],
        "history_10-19": ((history >= 10) & (history <= 19))[owner],
        "history_20-49": ((history >= 20) & (history <= 49))[owner],
        "history_50+": (history >= 50)[owner],
        "user_new": (~seen_user)[owner],
        "user_seen": seen_user[owner],
        "news_fresh": every & fresh,
        "news_seen": every & ~fresh,
    }
    out = {}
    for name, keep in slices.items():
        result = impression_metrics(scores[keep], labels[keep], owner[keep])
        with_click = len(np.unique(owner[keep & (labels == 1)]))
        out[f"slice/{name}/auc"] = result["auc"]
        out[f"slice/{name}/ndcg@10"] = result["ndcg@10"]
        out[f"slice/{name}/impressions"] = float(with_click)
    return out


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key


def test_slices_are_impression_metrics_of_each_slice():
    scores, labels, offsets, fresh, history, seen_user = data()
    values = flat_values(scores, labels, offsets, fresh)
    got = aggregate(values, history, seen_user)
    want = recomputed(scores, labels, offsets, fresh, history, seen_user)
    assert_same(got, want)
    assert got["slice/history_50+/impressions"] > 0 and got["slice/history_0/impressions"] > 0
    assert got["slice/user_new/impressions"] + got["slice/user_seen/impressions"] == sum(
        got[f"slice/history_{b}/impressions"] for b in ("0", "1-4", "5-9", "10-19", "20-49", "50+")
    )


def test_the_metric_over_batches_equals_the_flat_computation_and_counts_impressions_once():
    scores, labels, offsets, fresh, history, seen_user = data(1)
    width = int(np.diff(offsets).max())

    def batch(rows: np.ndarray):
        shape = (len(rows), width)
        s, y, f = np.zeros(shape, np.float32), np.full(shape, -1), np.zeros(shape, bool)
        for i, r in enumerate(rows):
            part = slice(offsets[r], offsets[r + 1])
            n = offsets[r + 1] - offsets[r]
            s[i, :n], y[i, :n], f[i, :n] = scores[part], labels[part], fresh[part]
        return (
            torch.from_numpy(s),
            torch.from_numpy(y),
            torch.from_numpy(f),
            torch.from_numpy(rows),
        )

    metric = SliceMetric()
    for rows in (
        np.arange(0, 120),
        np.arange(120, IMPRESSIONS),
        np.arange(100, 130),
    ):  # 100-129 twice
        s, y, f, r = batch(rows)
        metric.update(
            s, y, f, r + 1000, torch.from_numpy(history[rows]), torch.from_numpy(seen_user[rows])
        )
    got = metric.compute()
    want = aggregate(flat_values(scores, labels, offsets, fresh), history, seen_user)
    assert_same(got, want)


def test_an_impression_without_a_fresh_click_has_no_fresh_ndcg():
    scores = np.array([0.9, 0.5, 0.1, 0.8, 0.2], np.float32)
    labels = np.array([1, 0, 0, 0, 1], np.int8)
    owner = np.array([0, 0, 0, 1, 1])
    fresh = np.array([False, True, True, True, True])
    values = impression_values(scores, labels, owner, fresh, 2)
    assert values[0, 0, 1] == pytest.approx(1.0)  # all candidates: the click is first
    assert math.isnan(values[0, 1, 1])  # fresh candidates of impression 0: no click
    assert values[1, 1, 0] == pytest.approx(0.0)  # fresh: the click below the non-click
    assert values[1, 1, 1] == pytest.approx(1 / math.log2(3))


def test_a_submissions_ranks_give_the_values_of_its_reciprocal_ranks_without_a_sort():
    from newsrec.evaluation.submission import ranks_from_scores

    scores, labels, offsets, fresh, _, _ = data(2)
    ranks = ranks_from_scores(scores, offsets)  # distinct ranks; the ties of `scores` broken
    reciprocal = 1.0 / ranks.astype(np.float32)
    sorted_ = flat_values(reciprocal, labels, offsets, fresh)
    scattered = flat_values(reciprocal, labels, offsets, fresh, ranks)
    np.testing.assert_array_equal(np.isnan(sorted_), np.isnan(scattered))
    np.testing.assert_allclose(sorted_, scattered, rtol=1e-6, equal_nan=True)
