"""Beyond-accuracy metrics (newsrec.evaluation.beyond) against their definitions written out as loops,
and the same values from eval.py with one and with two DDP processes."""

from __future__ import annotations

import json
import math
from itertools import combinations, permutations

import numpy as np
import pytest
import torch
from test_ddp import run_script

from newsrec.evaluate import evaluate
from newsrec.evaluation.beyond import (
    BeyondAccuracy,
    coverage,
    intra_list_diversity_category,
    intra_list_diversity_vector,
    list_novelty,
    personalization,
    self_information,
)
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

# Hand-made top-3 lists of news rows; -1 = no entry (an impression with fewer candidates).
LISTS = [[1, 2, 3], [1, 2, 4], [5, 6, -1], [7, -1, -1], [2, 1, 3]]
CATEGORY = np.array([0, 1, 1, 2, 3, 3, 3, 1])  # of news rows 0..7
CLICKS = np.array([0, 9, 4, 0, 1, 0, 2, 0])  # train impressions with a click on each news
IMPRESSIONS = 15


def _entries(row: list[int]) -> list[int]:
    return [n for n in row if n >= 0]


# -- the definitions, one list at a time -------------------------------------------------------
def loop_ild(row: list[int], distance) -> float:
    items = _entries(row)
    pairs = list(permutations(items, 2))
    return sum(distance(a, b) for a, b in pairs) / len(pairs) if pairs else math.nan


def loop_personalization(lists: list[list[int]]) -> float:
    sets = [set(_entries(r)) for r in lists if _entries(r)]
    sims = [len(a & b) / math.sqrt(len(a) * len(b)) for a, b in combinations(sets, 2)]
    return 1 - sum(sims) / len(sims)


def _tensors():
    lists = torch.tensor(LISTS)
    return lists, lists >= 0, lists.clamp(min=0)


def test_intra_list_diversity_by_category_is_its_definition():
    lists, valid, rows = _tensors()
    got = intra_list_diversity_category(torch.as_tensor(CATEGORY)[rows], valid)
    want = [loop_ild(r, lambda a, b: float(CATEGORY[a] != CATEGORY[b])) for r in LISTS]
    np.testing.assert_allclose(got.numpy(), want, equal_nan=True)
    assert got[0] == pytest.approx(4 / 6)  # categories 1, 1, 2: 4 of 6 ordered pairs differ
    assert math.isnan(got[3])  # one entry: no pair


def test_intra_list_diversity_by_vector_is_its_definition():
    lists, valid, rows = _tensors()
    vectors = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))

    def cosine_distance(a: int, b: int) -> float:
        u, v = vectors[a].numpy(), vectors[b].numpy()
        return 1 - float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    got = intra_list_diversity_vector(vectors[rows], valid)
    np.testing.assert_allclose(
        got.numpy(), [loop_ild(r, cosine_distance) for r in LISTS], rtol=1e-6, equal_nan=True
    )
    same = intra_list_diversity_vector(torch.ones(1, 3, 4), torch.ones(1, 3, dtype=torch.bool))
    assert same.item() == pytest.approx(0.0, abs=1e-12)  # identical vectors: no diversity


def test_novelty_is_the_mean_self_information_of_train_click_popularity():
    information = self_information(CLICKS, IMPRESSIONS)
    # p = (clicks + 1) / (impressions + 1): never clicked -> log2(16) = 4 bits, 15 clicks -> 0.
    assert information[0].item() == pytest.approx(4.0)
    assert information[1].item() == pytest.approx(-math.log2(10 / 16))
    lists, valid, rows = _tensors()
    got = list_novelty(information[rows], valid)
    want = [
        np.mean([-math.log2((CLICKS[n] + 1) / (IMPRESSIONS + 1)) for n in _entries(r)])
        for r in LISTS
    ]
    np.testing.assert_allclose(got.numpy(), want)


def test_coverage_and_personalization_are_their_definitions():
    lists, valid, _ = _tensors()
    assert coverage(lists, valid, 10) == pytest.approx(len({1, 2, 3, 4, 5, 6, 7}) / 10)
    assert personalization(lists, valid) == pytest.approx(loop_personalization(LISTS))
    two = torch.tensor([[1, 2], [1, 3]])
    assert personalization(two, two >= 0) == pytest.approx(0.5)  # one shared of two: cos 1/2
    same = torch.tensor([[1, 2, 3], [3, 2, 1]])
    assert personalization(same, same >= 0) == pytest.approx(0.0)  # order does not matter
    apart = torch.tensor([[1, 2], [3, 4], [5, -1]])
    assert personalization(apart, apart >= 0) == pytest.approx(1.0)


def test_personalization_is_exact_on_many_random_lists():
    rng = np.random.default_rng(1)
    lists = rng.integers(1, 30, size=(60, 4))
    lists[rng.random(lists.shape) < 0.2] = -1
    lists[5] = [3, 3, 7, -1]  # a repeated news counts once, as in a set
    t = torch.as_tensor(lists)
    assert personalization(t, t >= 0) == pytest.approx(loop_personalization(lists.tolist()))


def test_the_metric_counts_each_impression_once_whatever_the_batches():
    lists, _, _ = _tensors()
    category, information = torch.as_tensor(CATEGORY), self_information(CLICKS, IMPRESSIONS)
    vectors = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    impressions = torch.arange(10, 15)

    def run(parts: list[list[int]]) -> dict[str, float]:
        metric = BeyondAccuracy(k=3)
        for part in parts:
            rows = lists[part][:, :2] if len(part) == 1 else lists[part]  # narrower batches too
            metric.update(rows, impressions[part], category, information, vectors[rows.clamp(0)])
        return metric.compute(catalogue_size=10)

    whole = run([[0, 1, 2, 3, 4]])
    assert run([[0, 1], [2, 3, 4], [1, 2]]) == whole  # repeats (a DDP sampler's padding) count once
    assert whole["coverage@3"] == pytest.approx(0.7)
    assert whole["personalization@3"] == pytest.approx(loop_personalization(LISTS))
    ild = [loop_ild(r, lambda a, b: float(CATEGORY[a] != CATEGORY[b])) for r in LISTS]
    assert whole["diversity_category@3"] == pytest.approx(np.nanmean(ild))


# -- eval.py: train's test, eval with 1 process and with 2 give the same values ----------------
BEYOND_KEYS = [
    f"test/{name}@10"
    for name in ("diversity_category", "diversity_vector", "coverage", "novelty", "personalization")
]


@pytest.mark.slow
def test_eval_reports_beyond_accuracy_alike_with_one_and_two_processes(data_dir, tmp_path):
    overrides = ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=1", *SMALL_NRMS]
    run = tmp_path / "train"
    trained = train(
        make_config(
            "train", [*overrides, "+trainer.limit_train_batches=4", "~logger"], data_dir, run
        )
    )
    ckpt = trained["best_checkpoint"]
    one = evaluate(
        make_config(
            "eval",
            ["data=synthetic_tiny", "trainer=cpu", f"ckpt_path={ckpt}"],
            data_dir,
            tmp_path / "one",
        )
    )
    overrides = ["trainer=ddp_cpu", "data=synthetic_tiny", f"ckpt_path={ckpt}"]
    run_script("eval.py", overrides, data_dir, tmp_path / "two")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in BEYOND_KEYS:
        assert 0.0 < one[key] < 20.0, key
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
        assert trained[key] == pytest.approx(one[key], abs=1e-6), key
    assert one["test/coverage@10"] <= 1.0 and one["test/personalization@10"] <= 1.0
