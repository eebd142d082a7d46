"""Shared fixtures: the tiny synthetic world, its preprocessing, and the real config tree.

Tests compose the real conf/ files with Hydra's compose API (as lightning-hydra-template's
tests do), pointing data and outputs at temporary folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import newsrec.config  # noqa: F401  (resolvers)
from newsrec.data.preprocess import PreprocessConfig, load_or_build
from newsrec.data.synthetic import SyntheticSource

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
