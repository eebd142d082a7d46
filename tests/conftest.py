"""Shared fixtures: the tiny synthetic world, its preprocessing, and the real config tree.

Tests compose the real conf/ files with Hydra's compose API (as lightning-hydra-template's
tests do), pointing data and outputs at temporary folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import newsrec.config  # noqa: F401  (resolvers)
from newsrec.data.info import DataInfo
from newsrec.data.preprocess import PreprocessConfig, load_or_build
from newsrec.data.synthetic import SyntheticSource
from newsrec.models.recommender import Recommender

CONF = Path(__file__).resolve().parents[1] / "conf"

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
    return Recommender.build(*parts, data, engine=engine or cfg.engine)


def built_run(cfg: DictConfig):
    """(datamodule, module) of a composed train config, prepared as train.py prepares them."""
    from newsrec import build  # imports Lightning: not at collection (it would keep its logs)

    dm, words = build.prepared_datamodule(cfg)
    module = build.module(cfg, dm.info, words)
    module.use_data(build.module_data(dm))
    return dm, module
