"""Scores a user relies on: independent of the batch, finite for empty histories, and the
fast evaluation path equal to scoring every impression on its own with the full model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from newsrec.data.datamodule import MindDataModule
from newsrec.data.synthetic import SyntheticSource
from newsrec.models.engine import EvaluationCache, encode_rows
from newsrec.models.engine.kernels import cpu_attention, fused_attention
from newsrec.models.engine.packing import bucket
from newsrec.models.layers import MultiHeadSelfAttention
from newsrec.models.recommender import Recommender

from conftest import build_recommender


@pytest.fixture(scope="module")
def dm(data_dir):
    dm = MindDataModule(SyntheticSource("synthetic_tiny"), data_dir=str(data_dir))
    dm.setup("test")
    return dm


def build(name: str, dm, seed: int = 0) -> tuple[Recommender, dict]:
    return build_recommender(name, dm.info, seed=seed).eval(), dm.news_table()


def plain_copy(model: Recommender) -> Recommender:
    """The same weights with every engine path off: the papers' padded computations."""
    news, user = model.news_encoder, model.user_encoder
    plain = Recommender(copy.deepcopy(news), copy.deepcopy(user), model.click_predictor, fast=False)
    if hasattr(plain.news_encoder, "pack"):  # only the NRMS title encoder packs
        plain.news_encoder.pack = False
    plain.dedup = False
    plain.empty_history = nn.Parameter(model.empty_history.detach().clone())
    return plain


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


@pytest.mark.parametrize(
    "name", ["nrms", "nrms_cnn", "nrms_no_attention", "lstur_con", "naml", "gru", "dkn", "npa"]
)
def test_fast_evaluation_equals_scoring_each_impression_alone(dm, name):
    model, table = build(name, dm)
    loader = dm.test_dataloader()
    batch = next(iter(loader))
    with torch.no_grad():
        if model.cacheable:
            # with the user encoder's per-news work done once (as evaluation runs), and without
            fast = EvaluationCache(model, table).scores(batch)
            unprepared = EvaluationCache(model, table, prepare=False)
            torch.testing.assert_close(fast, unprepared.scores(batch), rtol=1e-5, atol=1e-6)
        else:
            fast = model.exact_scores(batch, table)
        owner = batch["owner"]
        for i in range(0, len(owner), max(1, len(owner) // 12)):
            mask = batch["candidate_mask"][i]
            single = {
                "history": batch["history"][owner[i]][None],
                "history_mask": batch["history_mask"][owner[i]][None],
                "user": batch["user"][owner[i]][None],
                "candidates": batch["candidates"][i][mask][None],
            }
            expected = model(single, table)[0]
            torch.testing.assert_close(fast[i][mask], expected, rtol=1e-4, atol=1e-5)
    # The evaluation batch groups impressions: several share one encoded history.
    assert len(batch["history"]) < len(owner)


def test_distinct_news_are_encoded_once_per_batch(dm):
    model, table = build("nrms", dm)
    seen = []
    model.news_encoder.register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
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


@pytest.mark.parametrize("name", ["nrms", "nrms_no_attention", "npa"])
def test_the_engine_computes_what_the_plain_model_does(dm, name):
    """Training scores and gradients with the engine (kernels for the device, distinct news
    encoded once, titles packed or grouped by length, histories grouped by length) equal
    those of the papers' padded computations."""
    model, table = build(name, dm)
    model.double()  # float64: gradients summed over thousands of words, without rounding noise
    plain = plain_copy(model)
    for layer in model.modules():  # the engine's kernels are in place; the plain copy's not
        if hasattr(layer, "kernel"):
            assert layer.kernel is not None or layer.p == 0.0
    for layer in plain.modules():
        assert getattr(layer, "kernel", None) is None
    # 40 histories of varied length with extra padding: the engine encodes them in two
    # length groups, each cut to its longest (Recommender.users_from_inputs)
    batch = impression_batch(impressions(dm, 40), extra_history=5)
    results = []
    for m in (model, plain):
        m.zero_grad()
        scores = m(batch, table)
        scores[batch["candidate_mask"]].square().sum().backward()
        results.append((scores, {k: p.grad for k, p in m.named_parameters() if p.grad is not None}))
    (fast, fast_grads), (slow, slow_grads) = results
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    assert fast_grads.keys() == slow_grads.keys()
    for key, grad in fast_grads.items():
        torch.testing.assert_close(
            grad, slow_grads[key], rtol=1e-3, atol=1e-3 * slow_grads[key].abs().max().item()
        )


@pytest.mark.parametrize("name", ["lstur", "naml", "dkn"])
def test_news_encoded_in_length_groups_equal_one_padded_call(dm, name):
    model, table = build(name, dm)
    rows = torch.randperm(table["title"].shape[0])
    one_call = model.news_encoder(
        {k: table[k][rows] for k in model.news_encoder.features}, user=None
    )
    with torch.no_grad():
        grouped = encode_rows(model.news_encoder, table, rows, groups=3, min_group=1)
    torch.testing.assert_close(grouped, one_call.detach(), rtol=1e-5, atol=1e-5)


def test_kernels_follow_the_device_the_model_is_moved_to(dm):
    model, _ = build("nrms", dm)
    attention = model.user_encoder.self_attention
    assert attention.kernel.__name__ == "cpu_attention"  # built on the CPU
    model.to("meta")  # any other device: torch's fused attention, torch's dropout
    assert attention.kernel.__name__ == "fused_attention"
    assert model.news_encoder.dropout.kernel is None


def test_the_cpu_kernel_picks_the_faster_path_and_keeps_the_numbers(monkeypatch):
    """cpu_attention takes the fused kernel for long float32 rows (user histories), longer
    with gradients than without; either way eq. 1-2 with masked keys, and gradients."""
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
        for kernel in (None, cpu_attention):
            mhsa.kernel = kernel
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
    mhsa.kernel = None
