"""Initial weights as the reference code starts them (models/init.py), and the learned
fallback that ranks the candidates of a user with an empty history."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from newsrec.evaluation.scorer import Scorer
from newsrec.models.layers import AdditiveAttention, MultiHeadSelfAttention
from newsrec.models.recommender import Recommender

from conftest import build_recommender, data_info, plain_copy

DATA = data_info(
    vocab_size=300,
    num_categories=12,
    num_subcategories=40,
    num_users=500,
    num_entities=30,
    num_news=60,
    title_len=12,
    abstract_len=16,
)


def recommender(name: str, seed: int = 0) -> Recommender:
    """A model at the paper's sizes, built as train.py builds it."""
    return build_recommender(name, DATA, seed=seed)


def glorot_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out))


@pytest.mark.parametrize("name", ["nrms", "npa", "lstur_ini", "naml", "dkn", "gru"])
def test_dense_and_conv_layers_are_glorot_with_zero_bias(name):
    model = recommender(name)
    checked = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.weight.numel() > 2000:
            w = module.weight
            fan_out = w.shape[0] * w[0, 0].numel()
            fan_in = w[0].numel()
            if isinstance(module, nn.Linear) and any(
                isinstance(m, MultiHeadSelfAttention) and m.qkv is module for m in model.modules()
            ):
                fan_out //= 3  # Q, K and V are three matrices in the reference
            assert w.std().item() == pytest.approx(glorot_std(fan_in, fan_out), rel=0.1)
            if module.bias is not None:
                assert not module.bias.any()
            checked += 1
    assert checked >= 1


def test_self_attention_qkv_is_glorot_per_matrix_and_query_vector_too():
    model = recommender("nrms")
    attention = model.news_encoder.modules()
    (words,) = [m for m in attention if isinstance(m, MultiHeadSelfAttention)][:1]
    out, in_dim = words.qkv.weight.shape[0] // 3, words.qkv.weight.shape[1]
    for block in words.qkv.weight.split(out):  # 300 -> 256 each, not 300 -> 768
        assert block.std().item() == pytest.approx(glorot_std(in_dim, out), rel=0.1)
    for pool in (m for m in model.modules() if isinstance(m, AdditiveAttention)):
        bound = math.sqrt(6.0 / (pool.query.numel() + 1))
        assert pool.query.abs().max().item() <= bound
        assert pool.query.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)


@pytest.mark.parametrize("name", ["lstur_ini", "lstur_con", "npa"])
def test_user_id_embeddings_start_at_zero(name):
    model = recommender(name)
    tables = [m for n, m in model.named_modules() if n.endswith("user_embedding")]
    assert tables and all(not t.weight.any() for t in tables)


def test_gru_recurrence_is_orthogonal_and_biases_zero():
    gru = next(m for m in recommender("lstur_ini").modules() if isinstance(m, nn.GRU))
    hidden = gru.hidden_size
    w = gru.weight_hh_l0  # [3 * hidden, hidden]
    torch.testing.assert_close(w.T @ w, torch.eye(hidden), atol=1e-4, rtol=0)
    assert not gru.bias_ih_l0.any() and not gru.bias_hh_l0.any()


def test_topic_embeddings_are_small():
    model = recommender("naml")
    tables = [
        m for n, m in model.named_modules() if isinstance(m, nn.Embedding) and "category" in n
    ]
    assert len(tables) == 2
    for table in tables:
        assert table.weight.abs().max().item() <= 0.05
        assert table.weight.std().item() == pytest.approx(0.05 / math.sqrt(3), rel=0.15)


def _batch(empty_rows: list[int], batch: int = 8, history: int = 5, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, history, dtype=torch.bool)
    mask[empty_rows] = False
    return {
        "history": torch.randint(1, DATA.num_news, (batch, history), generator=g) * mask,
        "history_mask": mask,
        "candidates": torch.randint(1, DATA.num_news, (batch, 1 + k), generator=g),
        "user": torch.randint(1, DATA.num_users, (batch,), generator=g),
        "target": torch.zeros(batch, dtype=torch.long),
    }


def _table() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = DATA.num_news
    title = torch.randint(2, DATA.vocab_size, (n, DATA.title_len), generator=g)
    title[0] = 0
    return {
        "title": title,
        "abstract": torch.randint(2, DATA.vocab_size, (n, DATA.abstract_len), generator=g),
        "category": torch.randint(1, DATA.num_categories, (n,), generator=g),
        "subcategory": torch.randint(1, DATA.num_subcategories, (n,), generator=g),
        "title_entities": torch.zeros(n, DATA.title_len, dtype=torch.long),
    }


@pytest.mark.parametrize("name", ["nrms", "naml", "npa", "gru"])
def test_an_empty_history_ranks_its_candidates_after_one_training_step(name):
    model, table = recommender(name), _table()
    model.eval()
    probe = _batch([0, 1], seed=3)
    with torch.no_grad():
        before = model(probe, table)[:2]  # the two empty-history impressions
    # Without a fallback the user vector is zero and every candidate ties.
    assert torch.allclose(before, before[:, :1].expand_as(before))

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = _batch([0, 3])
    loss = F.cross_entropy(model(batch, table), batch["target"])
    loss.backward()
    optimizer.step()

    model.eval()
    with torch.no_grad():
        after = model(probe, table)[:2]
        spread = (after - after[:, :1]).abs().amax(dim=1)
    assert (spread > 1e-4).all()


def test_the_fallback_is_the_same_on_the_cached_evaluation_path():
    model, table = recommender("nrms"), _table()
    with torch.no_grad():
        model.empty_history.normal_()
    model.eval()
    probe = _batch([0, 2], seed=4)
    batch = {
        **probe,
        "owner": torch.arange(8),
        "candidate_mask": torch.ones_like(probe["candidates"], dtype=torch.bool),
    }
    exact = Scorer(plain_copy(model), table).scores(batch)
    cached = Scorer(model, table).scores(batch)
    torch.testing.assert_close(cached, exact, atol=1e-4, rtol=1e-4)
    assert (exact[0] - exact[0, 0]).abs().max() > 1e-3
