"""newsrec.evaluation.metrics against the official MIND definitions, written out plainly here."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from newsrec.constants import METRICS
from newsrec.evaluation.metrics import ImpressionMetrics, impression_metrics, segment_metrics

KEYS = ("auc", "mrr", "ndcg@5", "ndcg@10")


# -- the reference: one impression at a time, the official scorer's formulas ------------------


def _dcg(y_true: np.ndarray, y_score: np.ndarray, k: int) -> float:
    order = np.argsort(y_score, kind="stable")[::-1]
    gains = 2 ** np.take(y_true, order[:k]) - 1
    return float(np.sum(gains / np.log2(np.arange(len(gains)) + 2)))


def _ndcg(y_true: np.ndarray, y_score: np.ndarray, k: int) -> float:
    return _dcg(y_true, y_score, k) / _dcg(y_true, y_true, k)


def _mrr(y_true: np.ndarray, y_score: np.ndarray) -> float:
    order = np.argsort(y_score, kind="stable")[::-1]
    y_sorted = np.take(y_true, order)
    return float(np.sum(y_sorted / (np.arange(len(y_sorted)) + 1)) / np.sum(y_true))


def reference_metrics(scores, labels, impression_ids) -> dict[str, float]:
    """Per impression (its entries in input order), then the plain mean over impressions."""
    groups: dict[int, list[int]] = {}
    for row, impression in enumerate(np.asarray(impression_ids).tolist()):
        groups.setdefault(impression, []).append(row)
    per: dict[str, list[float]] = {key: [] for key in KEYS}
    auc_skipped = 0
    for rows in groups.values():
        y, s = np.asarray(labels)[rows], np.asarray(scores)[rows]
        if y.min() == y.max():
            auc_skipped += 1
        else:
            per["auc"].append(roc_auc_score(y, s))
        if y.sum() == 0:
            continue
        per["mrr"].append(_mrr(y, s))
        per["ndcg@5"].append(_ndcg(y, s, 5))
        per["ndcg@10"].append(_ndcg(y, s, 10))
    result = {key: float(np.mean(v)) if v else math.nan for key, v in per.items()}
    result.update(num_impressions=len(groups), auc_skipped=auc_skipped)
    return result


def assert_same(actual: dict, expected: dict) -> None:
    for key in KEYS:
        assert actual[key] == pytest.approx(expected[key], abs=1e-12, nan_ok=True), key
    assert actual["num_impressions"] == expected["num_impressions"]
    assert actual["auc_skipped"] == expected["auc_skipped"]


def random_impressions(rng: np.random.Generator, num: int, score_kind: str):
    """Impressions of 1..40 candidates, click rates from none to all, rows shuffled."""
    sizes = rng.integers(1, 41, num)
    sizes[:3] = 1  # one-candidate impressions
    ids = rng.choice(10**6, num, replace=False)
    impression = np.repeat(ids, sizes)
    rate = np.repeat(rng.choice([0.0, 0.05, 0.3, 1.0], num, p=[0.1, 0.5, 0.3, 0.1]), sizes)
    labels = (rng.random(impression.size) < rate).astype(np.int64)
    raw = rng.normal(size=impression.size)
    scores = {
        "ties64": np.round(raw, 1),  # many ties, including -0.0 against 0.0
        "ties32": np.round(raw, 1).astype(np.float32),
        "continuous64": raw,
    }[score_kind]
    shuffle = rng.permutation(impression.size)
    return scores[shuffle], labels[shuffle], impression[shuffle]


# -- impression_metrics -----------------------------------------------------------------------


@pytest.mark.parametrize("score_kind", ["ties64", "ties32", "continuous64"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_per_impression_reference(seed: int, score_kind: str) -> None:
    rng = np.random.default_rng(seed)
    scores, labels, impression = random_impressions(rng, 200, score_kind)
    expected = reference_metrics(scores, labels, impression)
    assert expected["auc_skipped"] > 10  # the data does exercise single-class impressions
    assert_same(impression_metrics(scores, labels, impression), expected)


def test_row_order_is_irrelevant_without_ties() -> None:
    rng = np.random.default_rng(2)
    scores, labels, impression = random_impressions(rng, 200, "continuous64")
    grouped = np.argsort(impression, kind="stable")
    assert_same(
        impression_metrics(scores[grouped], labels[grouped], impression[grouped]),
        impression_metrics(scores, labels, impression),
    )


def test_any_impression_ids() -> None:
    """Ids far apart, negative or non-integer take the general path: same result."""
    rng = np.random.default_rng(3)
    scores, labels, impression = random_impressions(rng, 100, "ties32")
    expected = impression_metrics(scores, labels, impression)
    spread = impression * 10**9 - 5 * 10**14  # a range beyond 2**31, negative ids
    assert_same(impression_metrics(scores, labels, spread), expected)
    as_text = np.char.add("imp", impression.astype(str))
    assert_same(impression_metrics(scores, labels, as_text), expected)


def test_hand_computed_single_click() -> None:
    # The click is ranked third of three: MRR 1/3, nDCG = (1/log2 4) / (1/log2 2) = 1/2.
    result = impression_metrics([0.1, 0.9, 0.5], [1, 0, 0], [7, 7, 7])
    assert result["mrr"] == pytest.approx(1 / 3)
    assert result["ndcg@5"] == pytest.approx(0.5)
    assert result["ndcg@10"] == pytest.approx(0.5)
    assert result["auc"] == 0.0


def test_hand_computed_two_clicks() -> None:
    # By score: click, non-click, click, non-click.
    result = impression_metrics([0.4, 0.3, 0.9, 0.1], [0, 1, 1, 0], [1, 1, 1, 1])
    assert result["mrr"] == pytest.approx((1 + 1 / 3) / 2)  # every click counts, not the first
    assert result["auc"] == pytest.approx(3 / 4)
    ideal = 1 + 1 / math.log2(3)
    assert result["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_mean_over_impressions_not_pooled() -> None:
    # Each impression ranks its click first (AUC 1), but pooled, 0.2 < 0.8 would give 3/4.
    result = impression_metrics([0.9, 0.8, 0.2, 0.1], [1, 0, 1, 0], [1, 1, 2, 2])
    assert result["auc"] == 1.0
    assert result["mrr"] == 1.0


def test_ties_count_half_for_auc_and_follow_reversed_stable_argsort() -> None:
    # AUC: a tie is half a win. MRR/nDCG: among equal scores the later entry ranks first, as
    # np.argsort(s, kind="stable")[::-1] orders them, so the click (first entry) is second.
    result = impression_metrics([0.5, 0.5], [1, 0], [1, 1])
    assert result["auc"] == 0.5
    assert result["mrr"] == 0.5
    assert impression_metrics([0.5, 0.5], [0, 1], [1, 1])["mrr"] == 1.0
    assert impression_metrics([-0.0, 0.0], [1, 0], [1, 1])["auc"] == 0.5


def test_negative_scores_order() -> None:
    result = impression_metrics([-2.0, -1.0, -3.5, 4.0], [0, 1, 0, 0], [1, 1, 1, 1])
    assert result["mrr"] == 0.5
    assert result["auc"] == pytest.approx(2 / 3)


def test_single_class_impressions() -> None:
    """No click: skipped for everything. All clicked: no AUC, but MRR and nDCG count."""
    base = impression_metrics([0.9, 0.1], [1, 0], [1, 1])
    with_no_click = impression_metrics([0.9, 0.1, 0.3, 0.2], [1, 0, 0, 0], [1, 1, 2, 2])
    assert_same(with_no_click, {**base, "num_impressions": 2, "auc_skipped": 1})

    all_clicked = impression_metrics([0.9, 0.1, 0.3, 0.2], [1, 0, 1, 1], [1, 1, 2, 2])
    assert all_clicked["auc"] == 1.0
    assert all_clicked["auc_skipped"] == 1
    assert all_clicked["mrr"] == pytest.approx((1 + (1 + 1 / 2) / 2) / 2)
    assert all_clicked["ndcg@10"] == 1.0

    one_candidate = impression_metrics([0.3], [1], [5])
    assert math.isnan(one_candidate["auc"])
    assert one_candidate["mrr"] == 1.0
    assert one_candidate["auc_skipped"] == 1


def test_empty_input() -> None:
    result = impression_metrics(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert all(math.isnan(result[key]) for key in KEYS)
    assert result["num_impressions"] == 0


def test_torch_and_numpy_inputs_agree() -> None:
    rng = np.random.default_rng(4)
    scores, labels, impression = random_impressions(rng, 50, "ties32")
    from_torch = impression_metrics(
        torch.from_numpy(scores), torch.from_numpy(labels).bool(), torch.from_numpy(impression)
    )
    assert_same(from_torch, impression_metrics(scores, labels, impression))
    half = torch.from_numpy(scores).bfloat16()  # numpy has no bfloat16: converted on the way
    assert_same(
        impression_metrics(half, labels, impression),
        impression_metrics(half.float().numpy(), labels, impression),
    )


@pytest.mark.parametrize(
    ("scores", "labels", "impression", "message"),
    [
        ([0.1, 0.2], [1, -1], [1, 1], "labels must be 0 or 1"),
        ([0.1, float("nan")], [1, 0], [1, 1], "NaN"),
        ([0.1, 0.2], [1, 0], [1], "same length"),
    ],
)
def test_bad_input_is_refused(scores, labels, impression, message) -> None:
    with pytest.raises(ValueError, match=message):
        impression_metrics(np.array(scores), np.array(labels), np.array(impression))


def test_vectorised_speed() -> None:
    """200k impressions must not cost a Python loop each (that would take seconds)."""
    rng = np.random.default_rng(5)
    impression = np.repeat(np.arange(200_000), 5)
    scores = rng.random(impression.size).astype(np.float32)
    labels = (rng.random(impression.size) < 0.2).astype(np.int64)
    start = time.perf_counter()
    impression_metrics(scores, labels, impression)
    assert time.perf_counter() - start < 3.0


# -- ImpressionMetrics (torchmetrics) ---------------------------------------------------------


def padded_batches(scores, labels, impression, batch_size: int):
    """Rows of whole impressions, padded with label -1 to the longest of the batch."""
    ids = list(dict.fromkeys(impression.tolist()))
    rows = [np.flatnonzero(impression == i) for i in ids]
    for first in range(0, len(ids), batch_size):
        chunk = rows[first : first + batch_size]
        width = max(len(r) for r in chunk)
        s = torch.full((len(chunk), width), 123.0)  # padding scores must be ignored
        y = torch.full((len(chunk), width), -1, dtype=torch.long)
        for b, r in enumerate(chunk):
            s[b, : len(r)] = torch.from_numpy(scores[r])
            y[b, : len(r)] = torch.from_numpy(labels[r])
        yield s, y, torch.tensor(ids[first : first + batch_size])


@pytest.fixture
def grouped_data():
    """Candidates of each impression contiguous and in candidate order (the wrapper's order)."""
    rng = np.random.default_rng(6)
    scores, labels, impression = random_impressions(rng, 120, "ties32")
    grouped = np.argsort(impression, kind="stable")
    return scores[grouped], labels[grouped], impression[grouped]


def test_wrapper_equals_flat_function(grouped_data) -> None:
    scores, labels, impression = grouped_data
    metric = ImpressionMetrics()
    for batch in padded_batches(scores, labels, impression, batch_size=16):
        metric.update(*batch)
    result = metric.compute()
    expected = impression_metrics(scores, labels, impression)
    assert set(result) == set(expected)
    assert_same({k: v.item() for k, v in result.items()}, expected)


def test_wrapper_ignores_repeated_impressions_and_batch_order(grouped_data) -> None:
    """A DistributedSampler pads by repeating samples; they must not count twice, and the
    result may not depend on the order in which batches arrive, ties included."""
    scores, labels, impression = grouped_data
    batches = list(padded_batches(scores, labels, impression, batch_size=16))
    metric = ImpressionMetrics()
    for batch in reversed(batches + batches[:3]):
        metric.update(*batch)
    expected = impression_metrics(scores, labels, impression)
    assert_same({k: v.item() for k, v in metric.compute().items()}, expected)


def test_wrapper_merges_states_like_ddp(grouped_data) -> None:
    """Two 'processes' with overlapping impressions, merged as the DDP sync concatenates."""
    scores, labels, impression = grouped_data
    batches = list(padded_batches(scores, labels, impression, batch_size=8))
    rank0, rank1 = ImpressionMetrics(), ImpressionMetrics()
    for batch in batches[0::2]:
        rank0.update(*batch)
    for batch in batches[1::2] + batches[:1]:  # the sampler's padding repeats batch 0
        rank1.update(*batch)
    rank0.merge_state(rank1)
    expected = impression_metrics(scores, labels, impression)
    assert_same({k: v.item() for k, v in rank0.compute().items()}, expected)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_wrapper_without_updates_and_reset(grouped_data) -> None:
    metric = ImpressionMetrics()
    assert math.isnan(metric.compute()["auc"].item())
    scores, labels, impression = grouped_data
    for batch in padded_batches(scores, labels, impression, batch_size=32):
        metric.update(*batch)
    metric.reset()
    assert metric.compute()["num_impressions"].item() == 0


def test_segment_metrics_in_chunks_equal_impression_metrics() -> None:
    # The test split of MIND-large is scored a few million candidates at a time.
    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 30, size=400)  # some impressions without candidates
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    scores = rng.integers(0, 5, size=offsets[-1]).astype(np.float32)  # many ties
    labels = (rng.random(offsets[-1]) < 0.15).astype(np.int8)
    owner = np.repeat(np.arange(len(sizes)), sizes)
    whole = impression_metrics(scores, labels, owner)
    for max_entries in (1, 37, 10_000):
        chunked = segment_metrics(scores, labels, offsets, max_entries)
        assert chunked["num_impressions"] == whole["num_impressions"] == (sizes > 0).sum()
        assert chunked["auc_skipped"] == whole["auc_skipped"]
        for name in METRICS:
            assert chunked[name] == pytest.approx(whole[name], rel=1e-12)
