"""Scores a user relies on: independent of the batch, finite for empty histories; and the
engine (engine=fast: training, the evaluation cache, the kernels) equal to the papers' padded
computations (engine=plain) for every preset, in float64, scores and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from newsrec.data.datamodule import MindDataModule
from newsrec.data.synthetic import SyntheticSource
from newsrec.evaluation.scorer import Scorer
from newsrec.models.engine.kernels import fused_attention
from newsrec.models.engine.packing import bucket
from newsrec.models.layers import FastPath, MultiHeadSelfAttention
from newsrec.models.recommender import Recommender

from conftest import SELF_CONTAINED, build_recommender, small_sizes

PRESETS = SELF_CONTAINED


@pytest.fixture(scope="module")
def dm(data_dir):
    dm = MindDataModule(SyntheticSource("synthetic_tiny"), data_dir=str(data_dir))
    dm.setup("test")
    return dm


def build(
    name: str, dm, engine: str = "fast", seed: int = 0, small: bool = False
) -> tuple[Recommender, dict]:
    overrides = small_sizes(name) if small else []
    model = build_recommender(name, dm.info, *overrides, seed=seed, engine=engine)
    return model.eval(), dm.news_table()


def impression_batch(rows: list[dict], extra_history: int = 0, extra_candidates: int = 0):
    """An evaluation-style batch (one history per impression) with optional extra padding."""
    n = max(1, *(len(r["history"]) for r in rows)) + extra_history
    c = max(len(r["candidates"]) for r in rows) + extra_candidates
    batch = {
        "history": torch.zeros(len(rows), n, dtype=torch.long),
        "history_mask": torch.zeros(len(rows), n, dtype=torch.bool),
        "candidates": torch.zeros(len(rows), c, dtype=torch.long),
        "candidate_mask": torch.zeros(len(rows), c, dtype=torch.bool),
        "user": torch.tensor([r["user"] for r in rows]),
        "owner": torch.arange(len(rows)),
    }
    for i, r in enumerate(rows):
        h = torch.as_tensor(r["history"], dtype=torch.long)
        if len(h):
            batch["history"][i, n - len(h) :] = h
            batch["history_mask"][i, n - len(h) :] = True
        batch["candidates"][i, : len(r["candidates"])] = torch.as_tensor(r["candidates"])
        batch["candidate_mask"][i, : len(r["candidates"])] = True
    return batch


def impressions(dm, count: int) -> list[dict]:
    split = dm.data.splits["dev"]
    rows = []
    for i in range(count):
        h = split.history[split.history_offsets[i] : split.history_offsets[i + 1]]
        c = split.candidates[split.candidate_offsets[i] : split.candidate_offsets[i + 1]]
        rows.append({"history": h.tolist(), "candidates": c.tolist(), "user": int(split.user[i])})
    return rows


@pytest.mark.parametrize("name", ["nrms", "npa", "lstur", "dkn"])
def test_a_users_scores_do_not_depend_on_the_batch(dm, name):
    model, table = build(name, dm)
    rows = impressions(dm, 6)
    target = rows[0]
    with torch.no_grad():
        alone = model(impression_batch([target]), table)[0, : len(target["candidates"])]
        crowd = impression_batch(rows[::-1], extra_history=7, extra_candidates=5)
        mixed = model(crowd, table)[len(rows) - 1, : len(target["candidates"])]
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["nrms", "npa", "lstur", "naml", "dkn", "gru"])
def test_an_empty_history_gives_finite_scores(dm, name):
    model, table = build(name, dm)
    row = {"history": [], "candidates": [1, 2, 3], "user": 0}
    with torch.no_grad():
        scores = model(impression_batch([row]), table)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", PRESETS)
def test_the_engine_computes_what_the_plain_model_does(dm, name):
    """Training-batch scores and gradients with the engine (each distinct news once, text
    packed, histories in length groups, device kernels) equal those of the papers' padded
    computations, in float64, on 40 histories of varied length with extra padding (the
    engine's two length groups), an empty history and a one-word title."""
    fast, table = build(name, dm, "fast", small=True)
    plain, _ = build(name, dm, "plain", small=True)  # the same seed: the same weights
    rows = impressions(dm, 40)
    rows[3]["history"] = []
    one_word = rows[5]["candidates"][0]
    table["title"][one_word, 1:] = 0
    table["title_entities"][one_word, 1:] = 0
    batch = impression_batch(rows, extra_history=5)
    results = []
    for model in (fast.double(), plain.double()):
        scores = model(batch, table)
        scores[batch["candidate_mask"]].square().sum().backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        results.append((scores.detach(), grads))
    (engine, engine_grads), (padded, padded_grads) = results
    torch.testing.assert_close(engine, padded, rtol=1e-9, atol=1e-9)
    assert engine_grads.keys() == padded_grads.keys()
    scale = max(g.abs().max().item() for g in padded_grads.values())  # sums' rounding noise
    for key, grad in engine_grads.items():
        torch.testing.assert_close(grad, padded_grads[key], rtol=1e-7, atol=1e-10 * scale)


@pytest.mark.parametrize("name", PRESETS)
def test_evaluation_equals_scoring_each_impression_alone(dm, name):
    """The scorer of the fast engine (each news of the split once, each distinct history once;
    NPA: the title CNN once per news, each (user, news) pair once; DKN: one user vector per
    candidate) gives each impression the scores the plain model gives it alone."""
    model, table = build(name, dm, "fast", small=True)
    plain, _ = build(name, dm, "plain", small=True)
    batch = next(iter(dm.test_dataloader()))
    cached = Scorer(model, table).scores(batch)
    owner = batch["owner"]
    with torch.no_grad():
        for i in range(0, len(owner), max(1, len(owner) // 12)):
            mask = batch["candidate_mask"][i]
            single = {
                "history": batch["history"][owner[i]][None],
                "history_mask": batch["history_mask"][owner[i]][None],
                "user": batch["user"][owner[i]][None],
                "candidates": batch["candidates"][i][mask][None],
            }
            expected = plain(single, table)[0]
            torch.testing.assert_close(cached[i][mask], expected, rtol=1e-4, atol=1e-5)
    # The evaluation batch groups impressions: several share one encoded history.
    assert len(batch["history"]) < len(owner)


def test_distinct_news_are_encoded_once_per_batch(dm, monkeypatch):
    model, table = build("nrms", dm)
    seen = []
    encode = model.news_encoder.forward_packed
    monkeypatch.setattr(
        model.news_encoder,
        "forward_packed",
        lambda news, user=None: seen.append(len(news["title"])) or encode(news, user),
    )
    batch = impression_batch(impressions(dm, 8))
    with torch.no_grad():
        model(batch, table)
    rows = torch.cat([batch["history"].ravel(), batch["candidates"].ravel()])
    distinct = len(np.unique(rows.numpy()))
    # Each distinct news once, padded with empty rows to a bucketed count (a few shapes).
    assert seen == [bucket(distinct)]


def test_buckets_bound_the_shapes_a_run_sees_for_little_padding():
    sizes = np.arange(1, 40_000)
    buckets = np.array([bucket(int(n)) for n in sizes])
    assert (buckets >= sizes).all() and (buckets <= sizes * 33 / 32).all()
    # MIND-small batches hold ~1,400-1,800 distinct news and ~15-21k real title words.
    assert len(set(buckets[(sizes >= 1400) & (sizes <= 1800)])) <= 14
    assert len(set(buckets[(sizes >= 15_000) & (sizes <= 21_000)])) <= 16


def test_one_switch_chooses_the_engine(dm):
    """engine=fast hands the recommender an engine and switches on every layer's fast path;
    engine=plain: no engine, no fast path anywhere."""
    for engine in ("fast", "plain"):
        model, _ = build("lstur", dm, engine)
        layers = [m for m in model.modules() if isinstance(m, FastPath)]
        assert layers and all(layer.fast == (engine == "fast") for layer in layers)
        assert (model.engine is not None) == (engine == "fast")


def test_the_cpu_kernel_picks_the_faster_path_and_keeps_the_numbers(monkeypatch):
    """On a CPU the attention kernel takes the fused kernel for long float32 rows (user
    histories), longer with gradients than without; either way eq. 1-2 with masked keys, and
    gradients."""
    import newsrec.models.engine.kernels as kernels

    fused_calls = []
    monkeypatch.setattr(
        kernels, "fused_attention", lambda *a: fused_calls.append(1) or fused_attention(*a)
    )
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(in_dim=12, heads=4, head_dim=4)
    for rows, length, grad, fused in (
        (8, 50, True, True),  # a training batch's histories
        (8, 24, False, True),  # an evaluation batch's long histories
        (8, 40, True, False),  # shorter rows in training
        (8, 16, False, False),  # titles, short histories
    ):
        x = torch.randn(rows, length, 12, requires_grad=grad)
        mask = torch.rand(rows, length) < 0.7
        mask[0] = False  # an empty history: zero output
        results = []
        for fast in (False, True):
            mhsa.set_fast(fast)
            fused_calls.clear()
            with torch.set_grad_enabled(grad):
                out = mhsa(x, mask)
                grads = torch.autograd.grad(out.square().sum(), x) if grad else None
            results.append((out.detach(), grads))
        assert bool(fused_calls) == fused
        (plain, plain_grad), (fast, fast_grad) = results
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        assert (fast[0] == 0).all()
        if grad:
            torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-4, atol=1e-5)
