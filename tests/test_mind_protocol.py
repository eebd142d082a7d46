"""The published protocol on a MIND-small-shaped world on disk, offline.

A user who runs `python train.py data=mind_small data.source.data_dir=...` must get what the
published MIND-small numbers used: every train day trained on (train_samples = the clicks of
train's behaviors.tsv), validation and test on dev, GloVe rows also for words that only dev
news use. `data.preprocess.val_days=1` is the held-out-day variant; `embedding=random` on MIND
is allowed and warned about.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from newsrec.data.mind import tokenize
from newsrec.train import train

from conftest import SMALL_NRMS, make_config
from fixtures_mind import (  # noqa: F401  (no_internet is a fixture)
    no_internet,
    write_mind_split,
    write_split_after_train,
)

pytestmark = pytest.mark.usefixtures("no_internet")

DIM = 32  # SMALL_NRMS's word_dim
COVERED, UNCOVERED = "zebra", "xylophonic"  # dev-only words: in the GloVe file, and not


def _clicks(behaviors: Path) -> tuple[int, int]:
    """(impressions, clicks) of a behaviors.tsv, read straight from the text."""
    rows = [line.split("\t") for line in behaviors.read_text().splitlines()]
    return len(rows), sum(token.endswith("-1") for row in rows for token in row[4].split())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """MINDsmall_train/ + MINDsmall_dev/, dev holding a news whose title has two new words,
    and a GloVe text covering train's title words and one of the two new ones."""
    root = tmp_path_factory.mktemp("mind_small")
    train_dir = write_mind_split(
        root / "MINDsmall_train", num_news=16, num_users=5, num_impressions=24, non_click=True
    )
    dev_dir = write_split_after_train(
        root / "MINDsmall_dev", 1, num_news=16, num_users=6, num_impressions=8
    )
    fresh = f"N99\tnews\tnewsus\tThe {COVERED.capitalize()} {UNCOVERED} parade\t\t\t[]\t[]"
    with open(dev_dir / "news.tsv", "a", encoding="utf-8") as f:
        f.write(fresh + "\n")
    behaviors = (dev_dir / "behaviors.tsv").read_text().splitlines()
    cols = behaviors[0].split("\t")
    cols[4] = "N99-0 " + cols[4]  # a dev impression shows the fresh news
    behaviors[0] = "\t".join(cols)
    (dev_dir / "behaviors.tsv").write_text("\n".join(behaviors) + "\n")
    titles = [line.split("\t")[3] for line in (train_dir / "news.tsv").read_text().splitlines()]
    words = sorted({w for t in titles for w in tokenize(t)} | {COVERED, "the"})
    rng = np.random.default_rng(3)
    lines = [f"{w} {' '.join(f'{x:.5f}' for x in rng.normal(0.0, 0.5, DIM))}" for w in words]
    glove = root / "glove.txt"
    glove.write_text("\n".join(lines) + "\n")
    vectors = {
        w: np.array(v.split(), dtype=np.float32) for w, v in (x.split(" ", 1) for x in lines)
    }
    return {"root": root, "train": train_dir, "dev": dev_dir, "glove": glove, "vectors": vectors}


def _run(world: dict, tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    cfg = make_config(
        "train",
        [
            "data=mind_small",
            f"data.source.data_dir={world['root']}",
            "data.source.mirrors=[]",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "data.batch_size=8",
            *SMALL_NRMS,
            *extra,
        ],
        tmp_path / "data",
        tmp_path / "run",
    )
    return train(cfg), tmp_path / "run"


@pytest.fixture(scope="module")
def published(world, tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("published")
    return _run(world, tmp, "embedding=glove_file", f"embedding.path={world['glove']}")


def test_mind_small_trains_on_every_train_day_and_reports_dev(world, published):
    metrics, _ = published
    impressions, clicks = _clicks(world["train"] / "behaviors.tsv")
    assert metrics["train_impressions"] == impressions  # no day held out
    assert metrics["train_samples"] == clicks  # one sample per click
    assert metrics["val_split"] == "dev" and metrics["test_split"] == "dev"
    for name in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert 0.0 <= metrics[f"test/{name}"] <= 1.0
        # Selection and test on the same split, as the published MIND-small numbers do.
        assert metrics[f"test/{name}"] == pytest.approx(metrics[f"val/{name}"], abs=1e-6)


def test_dev_only_words_get_their_pretrained_row_or_unk(world, published):
    metrics, _ = published
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    words = checkpoint["newsrec"]["vocab"]["words"]
    assert COVERED in words  # only dev uses it, and GloVe covers it
    assert UNCOVERED not in words  # GloVe does not: it stays <unk>
    cached = sorted((Path(metrics["best_checkpoint"]).parents[2] / "data" / "cache").glob("*.npy"))
    (initial,) = [np.load(p) for p in cached if p.name.startswith("embedding-")]
    assert initial.shape == (len(words), DIM)
    np.testing.assert_array_equal(initial[words.index(COVERED)], world["vectors"][COVERED])


def test_held_out_day_variant_and_random_vectors_warn(world, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="newsrec.train"):
        metrics, _ = _run(world, tmp_path, "data.preprocess.val_days=1", "embedding=random")
    impressions, _ = _clicks(world["train"] / "behaviors.tsv")
    assert metrics["val_split"] == "train_last_day" and metrics["test_split"] == "dev"
    assert 0 < metrics["train_impressions"] < impressions  # the last day is held out
    assert "random word vectors" in caplog.text
