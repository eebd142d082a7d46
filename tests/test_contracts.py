"""The parts' contracts: a new encoder is one class plus one yaml file (the README's example); the optimiser and the
schedule come from config; what a checkpoint from before conf/optimizer needs still loads."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from newsrec import build
from newsrec.models.base import UserEncoder
from newsrec.models.recommender import Recommender
from newsrec.models.user_encoders import AdditiveUserEncoder, CandidateAwareUserEncoder

from conftest import SMALL_NRMS, data_info

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(first_line: str) -> str:
    """The README's fenced code block that starts with `first_line`."""
    blocks = re.findall(r"```\w*\n(.*?)```", README.read_text(), flags=re.S)
    found = [block for block in blocks if block.startswith(first_line)]
    assert len(found) == 1, f"README: one code block starting {first_line!r}"
    return found[0]


@pytest.fixture(scope="module")
def my_models(tmp_path_factory):
    """The README's "Add a model" example, my_models.py, imported from where a user saves it."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "my_models.py").write_text(readme_block("# my_models.py"))
    sys.path.insert(0, str(folder))
    yield importlib.import_module("my_models")
    sys.path.remove(str(folder))
    sys.modules.pop("my_models", None)


@pytest.mark.parametrize("engine", ["fast", "plain"])
def test_the_readme_example_trains_through_train_py(train_config, tmp_path, my_models, engine):
    """The README's "Add a model", as written there: its class (my_models.py) and its yaml
    file (in a config folder of the user's, on Hydra's search path):
    `model/news_encoder=title_mean` composes it with NRMS's user encoder, trains it and tests
    it, on either engine."""
    from newsrec.train import train

    conf = tmp_path / "my_conf"
    (conf / "model" / "news_encoder").mkdir(parents=True)
    yaml = readme_block("# conf/model/news_encoder/title_mean.yaml")
    (conf / "model" / "news_encoder" / "title_mean.yaml").write_text(yaml)
    cfg = train_config(
        f"hydra.searchpath=[file://{conf}]",
        "model/news_encoder=title_mean",
        "model.news_encoder.word_dim=32",  # narrower than the README's 300 / 256: a test
        "model.news_encoder.dim=64",
        "model.user_encoder.heads=4",  # 64 / 4
        "model.user_encoder.query_dim=16",
        f"model.engine={engine}",
        "~logger",
        "callbacks=none",
    )
    assert cfg.model.news_encoder._target_ == "my_models.TitleMeanEncoder"
    metrics = train(cfg)
    # encoder dense, user self-attention Q/K/V, additive attention, the empty-history vector
    expected = (32 * 64 + 64) + 3 * 64 * 64 + (64 * 16 + 32) + 64
    assert metrics["params_without_embeddings"] == expected
    assert 0.0 <= metrics["test/auc"] <= 1.0


def test_parts_that_do_not_subclass_the_contract_are_refused_clearly(my_models):
    class Loose(nn.Module):
        output_dim = 8

    data = data_info()
    user = AdditiveUserEncoder(data, 8)
    with pytest.raises(TypeError, match="subclass newsrec.models.base.NewsEncoder"):
        Recommender(Loose(), user, nn.Identity())
    with pytest.raises(TypeError, match="UserEncoder"):
        Recommender(my_models.TitleMeanEncoder(data, dim=8), Loose(), nn.Identity())
    assert isinstance(user, UserEncoder)


def test_a_candidate_aware_user_encoder_asks_for_the_candidates():
    encoder = CandidateAwareUserEncoder(data_info(), news_dim=8)
    with pytest.raises(ValueError, match="candidate-aware: pass the candidates"):
        encoder(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2).long())


def test_word_attention_is_declared_by_the_encoder(my_models):
    with pytest.raises(ValueError, match="TitleMeanEncoder has no word attention"):
        my_models.TitleMeanEncoder(data_info()).word_attention(torch.ones(1, 3).long())


def _module(train_config, *overrides: str):
    """A module as train.py builds it, from train.yaml with `overrides` (small NRMS if none)."""
    return build.module(train_config(*(overrides or SMALL_NRMS)), data_info())


def test_optimizer_and_scheduler_come_from_config(train_config):
    optimizer = _module(train_config).configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["fused"]
    module = _module(
        train_config,
        "model=npa",
        "model.optimizer.lr=1e-4",
        "model.optimizer.weight_decay=0.01",
        "scheduler=reduce_on_plateau",
    )
    assert module.hparams.name == "npa"
    config = module.configure_optimizers()
    assert config["optimizer"].defaults["lr"] == 1e-4
    assert config["optimizer"].defaults["weight_decay"] == 0.01
    assert isinstance(
        config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau
    )
    assert config["lr_scheduler"]["monitor"] == "val/auc"
    assert module.hparams.optimizer["lr"] == 1e-4  # saved with checkpoints


def test_the_model_summary_is_quiet_under_bf16(train_config):
    import pytorch_lightning as pl

    from newsrec.console.summary import ModelSummary

    module = _module(train_config)
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    module.trainer = trainer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = ModelSummary(max_depth=2)._summary(trainer, module)
    assert not [w for w in caught if "model summary" in str(w.message)]
    assert summary.trainable_parameters == sum(p.numel() for p in module.parameters())
