"""Every file the commands read is checked as the MIND files are (issue 21, item 7).

Each bad kind gives a message naming the file, exits without a traceback, and caches
nothing: a split's news.tsv that is empty or leaves too many of the split's news missing; a
checkpoint that is truncated, not a checkpoint, not newsrec's, or of another model or
vocabulary, for eval.py, recommend.py, the Python API and resuming; a damaged preprocessing
cache, which is rebuilt.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import newsrec
from newsrec.checkpoints import CheckpointError
from newsrec.cli import run_cli
from newsrec.data import preprocess
from newsrec.data.mind import DataError, read_behaviors
from newsrec.data.preprocess import PreprocessConfig, load_or_build
from newsrec.data.synthetic import SyntheticSource
from newsrec.evaluate import evaluate
from newsrec.serving.recommend import recommend
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data=synthetic_tiny", "trainer=cpu"]


def fails_with(function, cfg, capsys, *fragments: str) -> str:
    """Run `function` as the command lines do: exit status 1, the message, no traceback."""
    with pytest.raises(SystemExit) as stop:
        run_cli(function, cfg)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# news.tsv


@pytest.fixture
def world(tmp_path, tiny_paths) -> Path:
    """A private copy of the tiny world, under the name the data config looks for."""
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_paths.train.parent, SyntheticSource("synthetic_tiny").path(data_dir))
    return data_dir


def test_an_empty_news_tsv_is_an_error_naming_it(world, tmp_path, capsys):
    news = SyntheticSource("synthetic_tiny").path(world) / "train" / "news.tsv"
    news.write_bytes(b"")
    cfg = make_config("train", TINY, world, tmp_path / "run")
    fails_with(train, cfg, capsys, f"{news}: no news in this file (it is empty)")
    assert not (world / "cache").exists()


def test_a_news_tsv_missing_a_large_share_of_its_news_is_an_error(world, tmp_path, capsys):
    news = SyntheticSource("synthetic_tiny").path(world) / "train" / "news.tsv"
    lines = news.read_text().splitlines(keepends=True)
    news.write_text("".join(lines[: len(lines) // 10]))  # 90% of train's news gone
    cfg = make_config("train", TINY, world, tmp_path / "run")
    err = fails_with(train, cfg, capsys, f"{news}: ", "data.preprocess.max_missing_news=0.1")
    share = float(err.split("% of the news entries")[0].rsplit(" ", 1)[1])
    assert share > 10
    assert not (world / "cache").exists()
    # The share is a setting: raised, the same files preprocess, with a warning.
    cfg = make_config(
        "train", [*TINY, "data.preprocess.max_missing_news=0.99"], world, tmp_path / "run"
    )
    from newsrec import build

    with build.preparing_data(world):
        dm = build.datamodule(cfg)
        dm.prepare_data()
    assert (world / "cache").is_dir()


def test_a_few_missing_news_are_a_warning_in_the_data_report(tiny_paths, tmp_path, caplog):
    folder = tmp_path / "world"
    shutil.copytree(tiny_paths.train.parent, folder)
    news = folder / "train" / "news.tsv"
    # Remove train-only news until 2-5% of train's history and candidate entries lose theirs.
    others = set()
    for split in ("dev", "test"):
        with open(folder / split / "news.tsv") as f:
            others |= {line.split("\t")[0] for line in f}
    train = read_behaviors(folder / "train" / "behaviors.tsv")
    named = Counter(train.history.values.to_pylist() + train.candidates.values.to_pylist())
    total, removed, gone = sum(named.values()), set(), 0
    for news_id, count in sorted(named.items(), key=lambda item: item[1]):
        if news_id not in others and gone + count <= 0.05 * total:
            removed.add(news_id)
            gone += count
    assert 0.02 * total < gone <= 0.05 * total
    lines = news.read_text().splitlines(keepends=True)
    news.write_text("".join(line for line in lines if line.split("\t")[0] not in removed))
    paths = type(tiny_paths)(folder / "train", folder / "dev", folder / "test", True)
    with caplog.at_level(logging.INFO):
        load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"data report: {news}: {100 * gone / total:.1f}% of the news entries" in warning
    assert "warn_missing_news=0.01" in warning


# ---------------------------------------------------------------------------------------------
# checkpoints


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> Path:
    """A small NRMS trained for 2 batches: its last.ckpt."""
    out = tmp_path_factory.mktemp("ckpt_run")
    overrides = [*TINY, *SMALL_NRMS, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    train(make_config("train", [*overrides, "test=false", "logger=[]"], data_dir, out))
    return out / "checkpoints" / "last.ckpt"


def _edited(checkpoint: Path, folder: Path, edit) -> Path:
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    edit(content)
    path = folder / "edited.ckpt"
    torch.save(content, path)
    return path


def _shrink_vocabulary(content: dict) -> None:
    content["newsrec"]["vocab"]["words"] = content["newsrec"]["vocab"]["words"][:-5]


def _widen_heads(content: dict) -> None:
    content["hyper_parameters"]["news_encoder"]["head_dim"] = 16


KINDS = ["truncated", "text", "foreign", "other_model", "other_vocabulary"]


def bad_file(kind: str, checkpoint: Path, folder: Path) -> tuple[Path, str]:
    """A bad checkpoint of `kind` in `folder`, and what its message says."""
    if kind == "truncated":
        path = folder / "truncated.ckpt"
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
        return path, "not a readable checkpoint: truncated, damaged or not a PyTorch file"
    if kind == "text":
        path = folder / "notes.ckpt"
        path.write_text("not a checkpoint\n")
        return path, "not a readable checkpoint"
    if kind == "foreign":
        path = folder / "foreign.ckpt"
        torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, path)
        return path, "a Lightning checkpoint, but not one of newsrec"
    if kind == "other_model":
        return _edited(checkpoint, folder, _widen_heads), "cannot take its weights"
    return _edited(checkpoint, folder, _shrink_vocabulary), "its vocabulary does not match"


@pytest.fixture(params=KINDS)
def bad_checkpoint(request, checkpoint, tmp_path) -> tuple[Path, str]:
    return bad_file(request.param, checkpoint, tmp_path)


def test_eval_names_a_bad_checkpoint_and_caches_nothing(bad_checkpoint, tmp_path, capsys):
    path, message = bad_checkpoint
    data_dir = tmp_path / "fresh"
    cfg = make_config("eval", [*TINY, f"ckpt_path={path}"], data_dir, tmp_path / "run")
    fails_with(evaluate, cfg, capsys, f"{path}: ", message)
    assert files_under(data_dir) == []  # checked before any data is prepared


def test_recommend_names_a_bad_checkpoint_and_caches_nothing(bad_checkpoint, tmp_path, capsys):
    path, message = bad_checkpoint
    data_dir = tmp_path / "fresh"
    cfg = make_config("recommend", ["data=synthetic_tiny", f"ckpt_path={path}"], data_dir, tmp_path)
    fails_with(recommend, cfg, capsys, f"{path}: ", message)
    assert files_under(data_dir) == []


def test_the_api_names_a_bad_checkpoint(bad_checkpoint, tiny_paths):
    path, message = bad_checkpoint
    with pytest.raises(CheckpointError, match=message) as raised:
        newsrec.load(path, news=tiny_paths.dev / "news.tsv")
    assert str(path) in str(raised.value)


def test_a_missing_checkpoint_is_named_by_its_setting(tmp_path, capsys):
    cfg = make_config("eval", [*TINY, "ckpt_path=nowhere.ckpt"], tmp_path, tmp_path / "run")
    fails_with(evaluate, cfg, capsys, "ckpt_path=nowhere.ckpt: no such checkpoint file")


@pytest.mark.parametrize("kind", ["truncated", "text", "foreign"])
def test_resuming_from_a_bad_file_stops_before_any_data_is_prepared(
    kind, checkpoint, tmp_path, capsys
):
    path, message = bad_file(kind, checkpoint, tmp_path)
    data_dir = tmp_path / "fresh"
    cfg = make_config("train", [*TINY, f"ckpt_path={path}"], data_dir, tmp_path / "run")
    fails_with(train, cfg, capsys, f"{path}: ", message)
    assert files_under(data_dir) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "it holds another model than this run builds"),  # paper-size NRMS, not SMALL
        ([*SMALL_NRMS, "data.preprocess.min_word_count=2"], "it was trained on another vocabulary"),
    ],
)
def test_resuming_into_another_model_or_vocabulary_is_refused(
    overrides, message, checkpoint, data_dir, tmp_path, capsys
):
    cfg = make_config("train", [*TINY, *overrides, f"ckpt_path={checkpoint}"], data_dir, tmp_path)
    fails_with(train, cfg, capsys, f"{checkpoint}: {message}")
    assert not (tmp_path / "checkpoints").exists()  # stopped before fitting


def test_eval_py_prints_the_message_without_a_traceback_or_a_run_folder(checkpoint, tmp_path):
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(checkpoint.read_bytes()[:1000])
    env = {**os.environ, "NEWSREC_DATA_DIR": str(tmp_path / "data")}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {path}: not a readable checkpoint")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------------------
# the preprocessing cache


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_cache_is_rebuilt_not_trusted(damage, tiny_paths, tmp_path, monkeypatch, caplog):
    cfg = PreprocessConfig()
    first = load_or_build(tiny_paths, cfg, tmp_path, progress=False)
    first_labels = np.array(first.splits["dev"].labels)
    target = first.path / "train_candidates.npy"
    content = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(content[: len(content) // 2])
    elif damage == "flip":  # same size, one value changed: only the checksum sees it
        target.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    else:
        (first.path / "meta.json").write_text("{")
    built = []
    real_build = preprocess.build
    monkeypatch.setattr(preprocess, "build", lambda *a, **k: built.append(1) or real_build(*a, **k))
    with caplog.at_level(logging.WARNING):
        again = load_or_build(tiny_paths, cfg, tmp_path, progress=False)
    assert built == [1]
    assert f"cache {first.path} is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert target.read_bytes() == content  # whole again, under the same key
    np.testing.assert_array_equal(again.splits["dev"].labels, first_labels)
    load_or_build(tiny_paths, cfg, tmp_path, progress=False)  # and trusted from now on
    assert built == [1]


def test_data_errors_are_user_errors():
    assert issubclass(CheckpointError, DataError)
