"""Shared fixtures: the tiny synthetic world, its preprocessing, and the real config tree.

Tests compose the real conf/ files with Hydra's compose API (as lightning-hydra-template's
tests do), pointing data and outputs at temporary folders.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from torch import nn

import newsrec.config  # noqa: F401  (resolvers)
from newsrec.config import model_presets
from newsrec.data.info import DataInfo
from newsrec.data.preprocess import PreprocessConfig, load_or_build
from newsrec.data.synthetic import SyntheticSource
from newsrec.models.factory import build_recommender as build_parts
from newsrec.models.layers import FastPath
from newsrec.models.recommender import Recommender

CONF = Path(__file__).resolve().parents[1] / "conf"

# The presets that run on any world: nrms_plm needs a pretrained model folder (tests/test_plm.py
# trains it), nrms_docvec document vectors (tests/test_ebnerd_submission.py trains it).
SELF_CONTAINED = [name for name in model_presets() if name not in ("nrms_plm", "nrms_docvec")]

# A smaller NRMS for tests about the training loop rather than the architecture.
SMALL_NRMS = [
    "model.news_encoder.word_dim=32",
    "model.news_encoder.heads=4",
    "model.news_encoder.head_dim=8",
    "model.news_encoder.query_dim=16",
    "model.user_encoder.heads=4",
    "model.user_encoder.query_dim=16",
]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder per test process: the tiny world is generated once and shared."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_paths(data_dir):
    return SyntheticSource("synthetic_tiny", seed=0).prepare(data_dir, progress=False)


@pytest.fixture(scope="session")
def tiny_data(tiny_paths, data_dir):
    return load_or_build(tiny_paths, PreprocessConfig(), data_dir / "cache")


def make_config(name: str, overrides: list[str], data_dir: Path, output_dir: Path) -> DictConfig:
    """Compose conf/<name>.yaml like the command line would, outputs in `output_dir`."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            name,
            overrides=[
                f"paths.data_dir={data_dir}",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def train_config(data_dir, tmp_path):
    def build(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        defaults = ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=1"]
        return make_config("train", [*defaults, *overrides], data_dir, output_dir or tmp_path)

    return build


# Small widths for tests that compare computations rather than the papers' sizes; each key is
# set where the preset's part has it (`small_sizes`).
SMALL_SIZES = {
    "news_encoder": dict(
        word_dim=24,
        heads=4,
        head_dim=6,
        query_dim=8,
        filters=24,
        user_dim=8,
        category_dim=8,
        topic_dim=8,
        dim=24,
    ),
    "user_encoder": dict(heads=4, query_dim=8, user_dim=8, hidden=8),
}


def small_sizes(name: str) -> list[str]:
    """Overrides that shrink preset `name` to small widths, its structure kept."""
    cfg = model_config(name)
    return [
        f"model.{part}.{key}={value}"
        for part, sizes in SMALL_SIZES.items()
        for key, value in sizes.items()
        if key in cfg[part] and cfg[part][key] != 0  # topic_dim 0: no topics to shrink
    ]


def data_info(**overrides) -> DataInfo:
    """Sizes of a small made-up dataset, for models built without data."""
    sizes = dict(
        vocab_size=50,
        num_categories=6,
        num_subcategories=9,
        num_users=20,
        num_entities=15,
        num_news=40,
        title_len=30,
        abstract_len=12,
    )
    return DataInfo(**{**sizes, **overrides})


def model_config(name: str, *overrides: str) -> DictConfig:
    """conf/model/<name>.yaml alone (with `overrides` under `model.`), as train.yaml composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+model={name}", *overrides]).model


def build_recommender(
    name: str, data: DataInfo, *overrides: str, seed: int = 0, engine: str | None = None
) -> Recommender:
    """The recommender of preset `name` for `data`, as the LightningModule builds it."""
    cfg = model_config(name, *overrides)
    torch.manual_seed(seed)
    parts = (cfg.news_encoder, cfg.user_encoder, cfg.click_predictor)
    return build_parts(*parts, data, engine=engine or cfg.engine)


def assert_packed_equals_padded(news, features: dict, user) -> None:
    """A news encoder's packed path (`forward_packed`) gives the vectors and parameter
    gradients of its padded `forward`, for the loss sum(vectors^2)."""
    results = []
    for encode in (news.forward_packed, news.forward):
        news.zero_grad()
        vectors = encode(features, user)
        vectors.square().sum().backward()
        results.append((vectors, [p.grad.clone() for p in news.parameters() if p.grad is not None]))
    (packed, packed_grads), (padded, padded_grads) = results
    torch.testing.assert_close(packed, padded, rtol=1e-9, atol=1e-9)
    assert len(packed_grads) == len(padded_grads) > 0
    for a, b in zip(packed_grads, padded_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9 * b.abs().max().item())


def plain_copy(model: Recommender) -> Recommender:
    """The same weights without the engine: the papers' padded computations (`engine=plain`)."""
    parts = [copy.deepcopy(part) for part in (model.news_encoder, model.user_encoder)]
    for module in (m for part in parts for m in part.modules()):
        if isinstance(module, FastPath):
            module.set_fast(False)
    plain = Recommender(*parts, copy.deepcopy(model.click_predictor))
    plain.empty_history = nn.Parameter(model.empty_history.detach().clone())
    return plain.train(model.training)


def built_run(cfg: DictConfig):
    """(datamodule, module) of a composed train config, prepared as train.py prepares them."""
    from newsrec import build  # imports Lightning: not at collection (it would keep its logs)

    dm, words = build.prepared_datamodule(cfg)
    module = build.module(cfg, dm.info, words)
    module.use_data(build.module_data(dm))
    return dm, module
