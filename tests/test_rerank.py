"""Re-rankers (newsrec.evaluation.rerank) against greedy loops written from their papers,
one list at a time, and the guarantees downstream code relies on."""

from __future__ import annotations

import math

import pytest
import torch

from newsrec.evaluation.rerank import (
    STECK_ALPHA,
    RerankContext,
    Reranker,
    RerankError,
    build_reranker,
)

from conftest import make_config

N, D, B, C = 40, 6, 12, 9


def world(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    category = torch.randint(0, 5, (N,), generator=g)
    vectors = torch.randn(N, D, generator=g)
    candidates = torch.randint(1, N, (B, C), generator=g)
    mask = torch.ones(B, C, dtype=torch.bool)
    mask[1, 6:], mask[4, 2:] = False, False  # impressions with fewer candidates
    history = torch.randint(1, N, (B, 7), generator=g)
    history_mask = torch.rand(B, 7, generator=g) < 0.7
    history_mask[3] = False  # a user without history
    history = history * history_mask
    batch = {
        "candidates": candidates,
        "candidate_mask": mask,
        "history": history,
        "history_mask": history_mask,
        "owner": torch.arange(B),
        "user": torch.zeros(B, dtype=torch.long),
    }
    scores = torch.randn(B, C, generator=g)
    return scores, batch, RerankContext(category, vectors)


def relevance(scores: list[float]) -> list[float]:
    low, high = min(scores), max(scores)
    return [(s - low) / (high - low) if high > low else 0.0 for s in scores]


def history_distribution(b: int, batch, category) -> dict[int, float]:
    clicked = [
        int(n) for n, m in zip(batch["history"][b], batch["history_mask"][b], strict=True) if m
    ]
    return {
        c: sum(category[n] == c for n in clicked) / len(clicked)
        for c in {int(category[n]) for n in clicked}
    }


def loop_greedy(name: str, b: int, scores, batch, context, weight: float, depth: int) -> list[int]:
    """The candidate positions a re-ranker puts first in impression b, from the formulas."""
    items = [j for j in range(C) if batch["candidate_mask"][b, j]]
    rel = dict(zip(items, relevance([float(scores[b, j]) for j in items]), strict=True))
    category = {j: int(context.category[batch["candidates"][b, j]]) for j in items}
    vector = {j: context.news_vectors[batch["candidates"][b, j]] for j in items}
    p = history_distribution(b, batch, context.category)
    if name == "xquad" and not p:  # no history: the pool's categories are the aspects
        p = {c: sum(category[j] == c for j in items) / len(items) for c in set(category.values())}
    chosen: list[int] = []
    for _ in range(min(depth, len(items))):
        best, best_value = None, -math.inf
        for i in (j for j in items if j not in chosen):
            if name == "mmr":
                cos = [float(torch.cosine_similarity(vector[i], vector[j], dim=0)) for j in chosen]
                value = (1 - weight) * rel[i] - weight * (max(cos) if cos else 0.0)
            elif name == "calibration":  # Steck 2018: KL(p || (1 - a) q(S + i) + a p)
                cats = [category[j] for j in (*chosen, i)]
                kl = sum(
                    pg
                    * math.log(
                        pg / ((1 - STECK_ALPHA) * cats.count(g) / len(cats) + STECK_ALPHA * pg)
                    )
                    for g, pg in p.items()
                )
                value = (1 - weight) * rel[i] - (weight * kl if p else 0.0)
            else:  # xQuAD with binary P(i | c): P(c_i | u) while c_i is not covered yet
                covered = {category[j] for j in chosen}
                value = (1 - weight) * rel[i] + weight * p.get(category[i], 0.0) * (
                    category[i] not in covered
                )
            if value > best_value:  # strictly: the first candidate wins a tie
                best, best_value = i, value
        chosen.append(best)
    return chosen


def listed(scores: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    order = torch.sort(scores.masked_fill(~mask, -torch.inf), dim=1, descending=True, stable=True)[
        1
    ]
    return [[int(j) for j in row if mask[b, j]] for b, row in enumerate(order)]


@pytest.mark.parametrize("name", ["mmr", "calibration", "xquad"])
@pytest.mark.parametrize("weight", [0.3, 0.7, 0.9])  # 1.0: exact ties in theory
def test_each_reranker_is_its_greedy_formula(name, weight):
    scores, batch, context = world(1)
    depth = 5
    reranked = Reranker(name, weight, depth)(scores, batch, context)
    got, model = listed(reranked, batch["candidate_mask"]), listed(scores, batch["candidate_mask"])
    changed = 0
    for b in range(B):
        want = loop_greedy(name, b, scores, batch, context, weight, depth)
        assert got[b][: len(want)] == want, (name, weight, b)
        rest = [j for j in model[b] if j not in want]
        assert got[b][len(want) :] == rest  # after the re-ranked depth: the model's order
        changed += want != model[b][: len(want)]
    assert changed > 0  # the re-ranker did re-rank something
    assert len(got[4]) == 2  # an impression with fewer candidates than the depth


@pytest.mark.parametrize("name", ["mmr", "calibration", "xquad"])
def test_weight_zero_keeps_the_scores_bit_for_bit(name):
    scores, batch, context = world(2)
    scores[0, 3] = scores[0, 5] = scores[0, 0]  # ties: the downstream tie rules must see them
    out = Reranker(name, 0.0, 10)(scores, batch, context)
    assert torch.equal(out, scores)
    assert build_reranker({"name": "none", "weight": 0.5}) is None


def test_a_reranked_list_is_in_strictly_descending_scores():
    scores, batch, context = world(3)
    out = Reranker("mmr", 1.0, C)(scores, batch, context)
    mask = batch["candidate_mask"]
    for b in range(B):
        values = sorted(out[b][mask[b]].tolist(), reverse=True)
        assert len(set(values)) == len(values)  # no ties left for a tie rule to reorder


def test_bad_settings_say_what_to_do(data_dir, tmp_path):
    with pytest.raises(
        RerankError, match=r"rerank=mmx: choose one of none, mmr, calibration, xquad"
    ):
        build_reranker({"name": "mmx"})
    with pytest.raises(
        RerankError, match=r"rerank.weight=1.5: the trade-off weight must be in \[0, 1\]"
    ):
        build_reranker({"name": "mmr", "weight": 1.5})
    cfg = make_config(
        "eval", ["ckpt_path=x", "rerank=mmr", "rerank.weight=0.4"], data_dir, tmp_path
    )
    assert build_reranker(cfg.rerank) == Reranker("mmr", 0.4, 10)
    npa_like = RerankContext(torch.zeros(N, dtype=torch.long))  # no vectors, no encoder
    scores, batch, _ = world(4)
    with pytest.raises(RerankError, match="needs the model's news vectors"):
        Reranker("mmr", 0.5)(scores, batch, npa_like)
