"""Model parts: parameter counts against the papers, masks, and gradients for every preset.

Models are built from the real conf/model yaml files through Hydra's compose API, the way
train.py builds them, so a config that breaks a model breaks these tests.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from newsrec.data.info import DataInfo
from newsrec.models.engine.kernels import fused_attention, keys_first_attention
from newsrec.models.engine.packing import Packed, pad
from newsrec.models.layers import (
    AdditiveAttention,
    Dropout,
    MaskedGRU,
    MeanPooling,
    MultiHeadSelfAttention,
    masked_softmax,
)
from newsrec.models.recommender import Recommender

from conftest import assert_packed_equals_padded, build_recommender, data_info, model_config


def build(name: str, *overrides: str, data: DataInfo | None = None):
    """(config, news encoder, user encoder, click predictor), as the Recommender composes them."""
    model = build_recommender(name, data or data_info(), *overrides)
    return (
        model_config(name, *overrides),
        model.news_encoder,
        model.user_encoder,
        model.click_predictor,
    )


def params_without_embeddings(*modules: nn.Module) -> int:
    """Parameters outside every nn.Embedding (words, and user-ID / category / entity tables)."""
    embeddings = {
        id(p)
        for m in modules
        for e in m.modules()
        if isinstance(e, nn.Embedding)
        for p in e.parameters()
    }
    seen: set[int] = set()
    total = 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in embeddings and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def additive(d: int, q: int = 200) -> int:
    return d * q + q + q  # V, v, q


def test_nrms_parameter_count_matches_paper():
    _, news, user, click = build("nrms")
    word_self_attention = 3 * 300 * 256  # Q, K, V of 16 heads x 16 dims, no bias
    news_self_attention = 3 * 256 * 256
    expected = word_self_attention + additive(256) + news_self_attention + additive(256)
    assert expected == 530_208  # paper, Table 3: 530K
    assert params_without_embeddings(news, user, click) == expected


# Parameters without embeddings (paper, Table 3 convention): every nn.Embedding is left out,
# i.e. the word embedding for all models, plus the user-ID embeddings (NPA, LSTUR), the
# category / subcategory embeddings (LSTUR, NAML) and the entity embedding (DKN). The
# expected numbers are computed here from the architecture, independently of the code.
CNN = 300 * 3 * 400 + 400  # word CNN: 400 filters of width 3 over 300-d words = 360,400


def gru(inp: int, hidden: int) -> int:
    return 3 * (inp * hidden + hidden * hidden + 2 * hidden)  # 3 gates, W_i, W_h, b_i, b_h


EXPECTED_PARAMS = {
    "nrms": 530_208,
    "nrms_no_attention": 0,  # mean pooling at both levels: only the word embedding is trained
    "nrms_word_only": 3 * 300 * 256 + additive(256),
    "nrms_news_only": 3 * 300 * 300 + additive(300),  # 20 heads x 15 dims over 300-d news
    "nrms_additive_only": additive(300) + additive(300),
    "nrms_self_only": 3 * 300 * 256 + 3 * 256 * 256,
    "nrms_cnn": CNN + additive(400) + 3 * 400 * 400 + additive(400),
    # NPA: CNN, then at word and news level a preference query (100 -> 200, ReLU) and its
    # key (200 -> 400, tanh); the two user-ID embeddings are excluded.
    "npa": CNN + 2 * ((100 * 200 + 200) + (200 * 400 + 400)),
    # LSTUR: CNN + additive attention; topic embeddings excluded; news 600-d; GRU 600 -> 600.
    "lstur_ini": CNN + additive(400) + gru(600, 600),
    "lstur": CNN + additive(400) + gru(600, 600),
    "lstur_con": CNN + additive(400) + gru(600, 300),  # user = [300-d ID embedding; GRU 300]
    # NAML: two CNN + attention (title, abstract), two category denses (100 -> 400), the
    # view attention and the user attention.
    "naml": 2 * (CNN + additive(400)) + 2 * (100 * 400 + 400) + additive(400) + additive(400),
    # DKN: g(e) (100 -> 300), KCNN with 2 channels, windows 1-3 of 100 filters over 300-d
    # rows; candidate-aware attention DNN (600 -> 100 -> 1); click MLP (600 -> 300 -> 1).
    "dkn": (100 * 300 + 300)
    + sum(2 * h * 300 * 100 + 100 for h in (1, 2, 3))
    + (600 * 100 + 100 + 100 + 1)
    + (600 * 300 + 300 + 300 + 1),
    # GRU: dense 300 -> 400 over the mean word embedding, GRU 400 -> 400.
    "gru": (300 * 400 + 400) + gru(400, 400),
}
PRESETS = sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_count_without_embeddings(name: str):
    cfg, news, user, click = build(name)
    assert cfg.name == name
    assert params_without_embeddings(news, user, click) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", PRESETS)
def test_inputs_are_declared_before_the_model_is_built(name: str):
    """What preprocessing reads off the config (`declared_inputs`) is what the built encoder
    reads, and the reports' `inputs` name the user when a part embeds the user's ID."""
    from newsrec.build import declared_inputs

    cfg, news, user, click = build(name)
    assert declared_inputs(cfg).features == news.features
    model = Recommender(news, user, click)
    reads_user_id = any(
        isinstance(m, nn.Embedding) and "user" in n
        for part in (news, user)
        for n, m in part.named_modules()
    )
    assert set(model.inputs) == set(news.features) | ({"user"} if reads_user_id else set())
    assert news.output_dim == user.output_dim


def test_news_encoder_can_be_swapped_from_the_command_line():
    # `python train.py model=nrms model/news_encoder=cnn`: the user encoder adapts its heads
    _, news, user, _ = build("nrms", "model/news_encoder=cnn")
    assert type(news).__name__ == "CNNNewsEncoder"
    assert user.output_dim == news.output_dim == 400


def test_user_self_attention_width_mismatch_fails_clearly():
    with pytest.raises(ValueError, match="heads"):
        build("nrms", "model.user_encoder.head_dim=8")  # 16 x 8 = 128 != 256
    with pytest.raises(ValueError, match="divisible"):
        build("nrms_news_only", "model.user_encoder.heads=16")  # 300 / 16


def test_pretrained_word_embeddings_are_used_and_checked():
    vectors = torch.randn(50, 300)
    _, news, _, _ = build("nrms", data=data_info(word_embeddings=vectors))
    weight = news.embedding.embedding.weight
    assert torch.equal(weight[1:], vectors[1:]) and not weight[0].any()
    with pytest.raises(ValueError, match="word_dim=64"):
        build("nrms", data=data_info(word_embeddings=torch.randn(50, 64)))


# ---------------------------------------------------------------- attention layers and masks


def test_masked_softmax_zero_on_masked_and_finite_when_all_masked():
    scores = torch.randn(2, 5, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5])
    w = masked_softmax(scores, mask)
    assert torch.allclose(w[0].sum(), torch.tensor(1.0))
    assert (w[0, ~mask[0]] == 0).all() and (w[1] == 0).all()
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_self_attention_ignores_masked_keys_and_all_masked_rows_are_zero():
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(12, heads=2, head_dim=3).eval()
    x = torch.randn(3, 6, 12)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2] = False  # nothing to attend to
    assert not mhsa.fast  # built on its own: the paper's computation
    out, weights = mhsa(x, mask, return_weights=True)
    assert (weights[0, :, :, 4:] == 0).all()
    assert torch.allclose(weights[1].sum(-1), torch.ones(2, 6))
    assert (out[2] == 0).all() and torch.isfinite(out).all()
    # eq. 1-2 read as written: softmax over the keys of q k^T / sqrt(d), then the values
    q, k, v = (t.view(3, 6, 2, 3).transpose(1, 2) for t in mhsa.qkv(x).split(6, dim=-1))
    by_hand = torch.softmax((q @ k.transpose(-2, -1)) / 3**0.5 + (~mask[:, None, None]) * -1e9, -1)
    assert torch.allclose(weights[:2], by_hand[:2], atol=1e-6)
    assert torch.allclose(out[:2], (by_hand @ v).transpose(1, 2).reshape(3, 6, 6)[:2], atol=1e-6)
    # the engine's kernels (keys-first on CPU, fused elsewhere) give the same numbers, with
    # the same zero output for a row without keys
    for kernel in (keys_first_attention, fused_attention):
        assert torch.allclose(kernel(mhsa.qkv(x), mask, 2, 3), out, atol=1e-6), kernel.__name__
    # the packed path (real items only, in groups of rows, as the NRMS news encoder runs it)
    # gives them too, whatever the grouping
    # (and with fixed-size groups cut to a multiple of 4 columns, as training runs it)
    for packed in [
        *(Packed(mask, groups=g) for g in (1, 2, 3)),
        Packed(mask, rows=2, column_step=4),
    ]:
        result = mhsa.packed(x.reshape(-1, 12)[packed.index], packed)
        assert result.shape == (int(mask.sum()), 6)
        assert torch.allclose(pad(result, packed.index, (3, 6)), out * mask[..., None], atol=1e-6)
    # keys at masked positions can hold anything
    x2 = x.clone()
    x2[0, 4:] = 100 * torch.randn(2, 12)
    assert torch.allclose(mhsa(x2, mask)[0, :4], out[0, :4], atol=1e-5)


def test_packed_pooling_equals_padded_pooling():
    torch.manual_seed(0)
    lengths = torch.tensor([0, 1, 2, 3, 3, 5, 7])  # sorted, one empty row
    mask = torch.arange(8)[None, :] < lengths[:, None]
    x = torch.randn(7, 8, 10)
    packed = Packed(mask, groups=3)
    # groups: contiguous rows and items, each cut to its own longest row
    assert [r.start for r in packed.rows] == [0, 2, 5] and packed.rows[-1].stop == 7
    assert [t.stop - t.start for t in packed.tokens] == [1, 8, 12]
    assert [m.shape[1] for m in packed.masks] == [1, 3, 7]
    items = x.reshape(-1, 10)[packed.index]
    for layer in (AdditiveAttention(10, query_dim=4), MeanPooling(10)):
        pooled, weights = layer(x, mask)
        packed_pooled, packed_weights = layer.packed(items, packed)
        assert torch.allclose(packed_pooled, pooled, atol=1e-6)
        assert torch.allclose(packed_weights, weights, atol=1e-6)
        assert (packed_pooled[0] == 0).all()


def test_dropout_drops_at_the_rate_and_keeps_the_expectation():
    x = torch.ones(400_000, requires_grad=True)
    layer = Dropout(0.2).train()
    layer.set_fast(True)  # as the engine does: the cheap CPU mask
    torch.manual_seed(3)
    y = layer(x)
    kept = y != 0
    # the rate: 0.2 rounded to 16 bits; 5 binomial standard deviations of tolerance
    rate = 13107 / 65536
    assert abs((~kept).float().mean().item() - rate) < 5 * (rate * (1 - rate) / x.numel()) ** 0.5
    # kept values are scaled by the exact inverse keep rate, so E[y] = x
    assert torch.equal(y[kept], torch.full_like(y[kept], 65536 / (65536 - 13107)))
    # the gradient flows through the kept elements only, with the same scale
    y.backward(torch.full_like(y, 2.0))
    assert torch.equal(x.grad, 2 * y.detach())
    # masks come from torch's generator: the same seed, the same mask; another, another
    torch.manual_seed(3)
    assert torch.equal(layer(x), y)
    assert not torch.equal(layer(x), y)
    # half-precision input keeps its dtype and the rate; evaluation and p = 0 change nothing
    half = layer(torch.ones(100_000, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16 and 0.18 < (half == 0).float().mean().item() < 0.22
    assert layer.eval()(x) is x and Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout rate"):
        Dropout(1.0)
    # without the engine: torch's own dropout, at the exact rate
    layer.set_fast(False)
    plain = layer.train()(torch.ones(400_000))
    assert abs((plain == 0).float().mean().item() - 0.2) < 0.005


def test_additive_attention_ignores_masked_and_pools_empty_to_zero():
    att = AdditiveAttention(8, query_dim=5)
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    pooled, weights = att(x, mask)
    assert (weights[0, ~mask[0]] == 0).all() and torch.allclose(weights[0].sum(), torch.tensor(1.0))
    assert (pooled[1] == 0).all() and (weights[1] == 0).all()
    assert sum(p.numel() for p in att.parameters()) == 8 * 5 + 5 + 5


def test_masked_gru_takes_the_real_items_wherever_the_padding_is():
    torch.manual_seed(0)
    layer = MaskedGRU(4, 6)
    items = torch.randn(1, 3, 4)
    reference = layer.gru(items)[1][0]  # a plain GRU over the three real items
    x = torch.randn(2, 6, 4)
    x[0, [0, 2, 5]] = items[0]  # padding scattered
    x[1, [3, 4, 5]] = items[0]  # padding in front
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [0, 2, 5]] = True
    mask[1, [3, 4, 5]] = True
    out = layer(x, mask)
    assert torch.allclose(out, reference.expand(2, 6), atol=1e-6)
    h0 = torch.randn(2, 6)
    assert torch.equal(layer(x, torch.zeros_like(mask), h0), h0)  # empty history -> h0


def test_masked_gru_recurrence_from_input_gates_equals_torch_gru():
    """The engine's GRU (input gates apart, column by column with a masked update) gives
    torch.nn.GRU's last states and gradients, float64, for rows of every length."""
    torch.manual_seed(0)
    layer = MaskedGRU(5, 7).double()
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    mask = torch.rand(4, 6) < 0.6
    mask[0] = True  # full
    mask[1] = False  # empty: h0 itself
    mask[2, :] = False
    mask[2, 4] = True  # one item after padding
    h0 = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    plain = layer(x, mask, h0)
    grads = torch.autograd.grad(plain.square().sum(), [h0, *layer.parameters()])
    layer.set_fast(True)
    fast = layer.recur(layer.input_gates(x), mask, h0)
    assert torch.allclose(fast, plain, atol=1e-12)
    assert torch.equal(fast[1], h0[1])
    fast_grads = torch.autograd.grad(fast.square().sum(), [h0, *layer.parameters()])
    for a, b in zip(fast_grads, grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(layer(x, mask), layer.recur(layer.input_gates(x), mask), atol=1e-12)


# ---------------------------------------------------------------- encoders of every preset


def random_news_table(data: DataInfo, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Right-padded titles/abstracts of random lengths; row 0 is the padding news and row 1 a
    news whose title and abstract are all padding (it happens in MIND)."""
    n = data.num_news

    def text(length: int) -> torch.Tensor:
        words = torch.randint(1, data.vocab_size, (n, length), generator=gen)
        lengths = torch.randint(1, length + 1, (n, 1), generator=gen)
        words = words * (torch.arange(length) < lengths)
        words[:2] = 0
        return words

    title = text(data.title_len)
    entities = torch.randint(1, data.num_entities, title.shape, generator=gen)
    entities = entities * (torch.rand(title.shape, generator=gen) < 0.3) * (title != 0)
    category = torch.randint(1, data.num_categories, (n,), generator=gen)
    subcategory = torch.randint(1, data.num_subcategories, (n,), generator=gen)
    category[0] = subcategory[0] = 0
    return {
        "title": title,
        "abstract": text(data.abstract_len),
        "category": category,
        "subcategory": subcategory,
        "title_entities": entities,
    }


def random_batch(data: DataInfo, gen: torch.Generator, B: int = 3, N: int = 6, C: int = 4):
    """History padded on the left (most recent last), one user with an empty history, one
    candidate that is the all-padding news."""
    history = torch.randint(1, data.num_news, (B, N), generator=gen)
    lengths = torch.tensor([N, 2, 0])[:B]
    history_mask = torch.arange(N).flip(0) < lengths[:, None]
    candidates = torch.randint(2, data.num_news, (B, C), generator=gen)
    candidates[0, -1] = 1
    return {
        "history": history * history_mask,
        "history_mask": history_mask,
        "candidates": candidates,
        "user": torch.tensor([3, 0, 7])[:B],  # user 0: unseen in training
        "target": torch.zeros(B, dtype=torch.long),
    }


@pytest.mark.parametrize("name", PRESETS)
def test_forward_backward_gives_finite_gradients(name: str):
    gen = torch.Generator().manual_seed(0)
    data = data_info()
    model = build_recommender(name, data, engine="plain").train()
    table, batch = random_news_table(data, gen), random_batch(data, gen)
    scores = model(batch, table)
    assert scores.shape == batch["candidates"].shape
    loss = nn.functional.cross_entropy(scores, batch["target"])
    loss.backward()
    assert torch.isfinite(loss)
    parts = (model.news_encoder, model.user_encoder, model.click_predictor)
    grads = [p.grad for part in parts for p in part.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_every_preset_runs_under_bfloat16_autocast():
    # DESIGN.md: bf16 autocast is the fast path on this CPU; masks use dtype-aware fills
    gen = torch.Generator().manual_seed(0)
    data = data_info()
    table, batch = random_news_table(data, gen), random_batch(data, gen)
    for name in PRESETS:
        for engine in ("plain", "fast"):
            model = build_recommender(name, data, engine=engine)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                scores = model(batch, table)
            assert torch.isfinite(scores).all(), (name, engine)


def news_encoders():
    """One instance of every news encoder class used by a preset (first preset using it)."""
    seen: dict[str, str] = {}
    for name in PRESETS:
        target = model_config(name).news_encoder._target_
        seen.setdefault(f"{target}:{model_config(name).news_encoder.get('topic_dim', 0)}", name)
    return sorted(set(seen.values()) | {"nrms_no_attention"})


@pytest.mark.parametrize("name", news_encoders())
def test_news_vector_ignores_padding(name: str):
    gen = torch.Generator().manual_seed(1)
    data = data_info()
    model = build_recommender(name, data, engine="plain").eval()
    news = model.news_encoder
    table = random_news_table(data, gen)
    rows = torch.arange(data.num_news)[None]  # every row, row 0 and the empty news included
    user = torch.tensor([5])
    before = model.encode_news(table, rows, user)
    assert torch.isfinite(before).all()
    # whatever the padding rows of the embedding tables hold, nothing changes
    with torch.no_grad():
        for m in news.modules():
            if isinstance(m, nn.Embedding) and m.padding_idx == 0:
                m.weight[0].normal_(std=10.0)
    assert torch.allclose(model.encode_news(table, rows, user), before, atol=1e-5)
    # nor does the padded length: the same titles with 7 more padding slots
    longer = {k: nn.functional.pad(v, (0, 7)) if v.dim() == 2 else v for k, v in table.items()}
    assert torch.allclose(model.encode_news(longer, rows, user), before, atol=1e-5)


@pytest.mark.parametrize("name", news_encoders())
def test_packed_news_encoding_equals_the_padded_computation(name: str):
    """Each news encoder's packed path (`forward_packed`: real words only; NRMS sorted and
    in groups of rows) computes what the padded `forward` does, vectors and gradients, in
    float64, for 800 news with empty, one-word and full-length texts."""
    gen = torch.Generator().manual_seed(2)
    data = data_info(num_news=800)
    news = build(name, data=data)[1].double().eval()  # dropout masks depend on the layout
    table = random_news_table(data, gen)
    for text in ("title", "abstract"):
        table[text][2:40, 1:] = 0  # one-word texts
        table[text][40:60] = torch.randint(1, data.vocab_size, table[text][40:60].shape)
    rows = torch.randperm(800, generator=gen)
    features = {k: table[k][rows] for k in news.features}
    user = torch.randint(0, data.num_users, (800,), generator=gen) if news.needs_user else None
    assert_packed_equals_padded(news, features, user)


USER_ENCODERS = ["nrms", "nrms_self_only", "naml", "npa", "gru", "lstur_ini", "lstur_con", "dkn"]


@pytest.mark.parametrize("name", USER_ENCODERS)
def test_user_vector_ignores_padded_history_slots(name: str):
    torch.manual_seed(2)
    _, news, user_encoder, _ = build(name)
    user_encoder.eval()
    D, B, N, C = news.output_dim, 3, 5, 4
    history, candidates = torch.randn(B, N, D), torch.randn(B, C, D)
    mask = torch.tensor([[False, False, True, True, True]] * B)
    users = torch.tensor([1, 2, 3])
    aware = candidates if user_encoder.candidate_aware else None
    before = user_encoder(history, mask, users, aware)
    changed = history.clone()
    changed[~mask] = 100 * torch.randn(int((~mask).sum()), D)
    assert torch.allclose(user_encoder(changed, mask, users, aware), before, atol=1e-5)
    expected_shape = (B, C, D) if user_encoder.candidate_aware else (B, D)
    assert before.shape == expected_shape


@pytest.mark.parametrize("name", USER_ENCODERS)
def test_empty_history_gives_the_documented_vector(name: str):
    _, news, user_encoder, _ = build(name)
    user_encoder.eval()
    D = news.output_dim
    users = torch.tensor([4, 0])
    history, candidates = torch.randn(2, 3, D), torch.randn(2, 2, D)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    aware = candidates if user_encoder.candidate_aware else None
    out = user_encoder(history, empty, users, aware)
    assert torch.isfinite(out).all()
    if name.startswith("lstur"):
        # the long-term (user-ID) part alone; unseen user 0 has a zero embedding
        long_term = user_encoder.user_embedding(users)
        assert torch.allclose(out[:, : long_term.shape[-1]], long_term)
        assert (out[1] == 0).all()
        if name == "lstur_con":
            assert (out[:, long_term.shape[-1] :] == 0).all()
    else:
        assert (out == 0).all()  # attention / GRU over nothing: the zero vector


def test_lstur_masks_the_long_term_vector_only_in_training():
    _, news, lstur, _ = build("lstur_ini", "model.user_encoder.user_mask_prob=1.0")
    nn.init.normal_(lstur.user_embedding.weight)  # trained long-term vectors (they start at 0)
    history = torch.randn(2, 3, news.output_dim)
    mask = torch.ones(2, 3, dtype=torch.bool)
    users = torch.tensor([4, 5])
    masked = lstur.train()(history, mask, users)
    assert torch.allclose(masked, lstur.gru(history, mask))  # as if the user were unknown
    assert not torch.allclose(lstur.eval()(history, mask, users), masked)


def test_candidate_aware_user_encoder_gives_one_vector_per_candidate():
    _, news, dkn_user, click = build("dkn")
    B, N, C, D = 2, 5, 3, news.output_dim
    user = dkn_user(
        torch.randn(B, N, D),
        torch.ones(B, N, dtype=torch.bool),
        torch.zeros(B).long(),
        torch.randn(B, C, D),
    )
    assert user.shape == (B, C, D)
    assert click(user, torch.randn(B, C, D)).shape == (B, C)
