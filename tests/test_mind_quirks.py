"""Broken real-data files, as a new user meets them.

Each malformed file gives a message naming the file and the line, and leaves nothing in the
cache that a later run would trust; train.py prints that message without a traceback (a
traceback stays available with HYDRA_FULL_ERROR=1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from newsrec import build
from newsrec.data.glove import GloveFormatError, load_glove
from newsrec.data.info import SplitPaths
from newsrec.data.mind import MindFormatError
from newsrec.data.preprocess import PreprocessConfig, load_or_build
from newsrec.data.pretrained import word_embeddings

from conftest import make_config
from fixtures_mind import write_mind_split

ROOT = Path(__file__).resolve().parents[1]


def _world(root: Path) -> SplitPaths:
    train = write_mind_split(root / "MINDsmall_train", num_impressions=10, non_click=True)
    dev = write_mind_split(root / "MINDsmall_dev", seed=2, first_impression_id=101)
    return SplitPaths(train, dev)


def _replace_line(path: Path, number: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def _cached(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*")) if cache.exists() else []


def test_empty_entity_file_means_no_entity_vectors_and_is_counted(tmp_path):
    paths = _world(tmp_path)
    (paths.train / "entity_embedding.vec").write_bytes(b"")  # 0 bytes, as a broken download
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache")
    assert data.report["empty entity_embedding.vec files (no entity vectors from them)"] == 1
    # dev's file still gives its vectors: 100-d rows, the named entities found.
    assert data.entity_vectors.shape[1] == 100 and np.abs(data.entity_vectors).sum() > 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_entity_vector_names_file_and_line(tmp_path, value):
    paths = _world(tmp_path)
    vec = paths.dev / "entity_embedding.vec"
    _replace_line(vec, 2, lambda line: line.rsplit("\t", 1)[0] + f"\t{value}")
    with pytest.raises(MindFormatError, match=r"entity_embedding\.vec:2: .*not finite"):
        load_or_build(paths, PreprocessConfig(), tmp_path / "cache")
    assert _cached(tmp_path / "cache") == []


def test_duplicate_impression_id_names_file_and_line(tmp_path):
    paths = _world(tmp_path)
    behaviors = paths.train / "behaviors.tsv"
    _replace_line(behaviors, 7, lambda line: "3" + line[line.index("\t") :])
    with pytest.raises(MindFormatError, match=r"behaviors\.tsv:7: impression ID 3 again") as err:
        load_or_build(paths, PreprocessConfig(), tmp_path / "cache")
    assert "first on line 3" in str(err.value)
    assert _cached(tmp_path / "cache") == []


def test_non_finite_glove_vector_names_file_and_line_and_nothing_is_cached(tmp_path):
    _world(tmp_path / "mind")
    glove = tmp_path / "glove.txt"
    glove.write_text("the 0.1 0.2\ncity 0.3 0.4\nteam inf 0.5\n")
    with pytest.raises(GloveFormatError, match=r"glove\.txt:3: .*nan or inf"):
        load_glove(glove, {"<pad>": 0, "team": 1})
    cfg = make_config(
        "train",
        [
            "data=mind_small",
            f"data.source.data_dir={tmp_path / 'mind'}",
            "embedding=glove_file",
            f"embedding.path={glove}",
        ],
        tmp_path / "data",
        tmp_path / "run",
    )
    datamodule = build.datamodule(cfg)
    datamodule.setup("fit")
    spec = OmegaConf.to_container(cfg.embedding, resolve=True)
    with pytest.raises(GloveFormatError, match=r"glove\.txt:3:"):
        word_embeddings(spec, cfg.paths.data_dir, 0, datamodule)
    assert not list(datamodule.cache_dir.glob("embedding-*"))


def _train_py(args: list[str], full_error: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_py_prints_a_user_error_without_traceback(tmp_path):
    paths = _world(tmp_path / "mind")
    _replace_line(
        paths.train / "entity_embedding.vec", 2, lambda line: line.rsplit("\t", 1)[0] + "\tnan"
    )
    args = [
        "data=mind_small",
        f"data.source.data_dir={tmp_path / 'mind'}",
        "embedding=random",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    quiet = _train_py(args, full_error=False)
    assert quiet.returncode == 1
    assert f"{paths.train / 'entity_embedding.vec'}:2:" in quiet.stderr
    assert "To fix:" in quiet.stderr and "Traceback" not in quiet.stderr
    full = _train_py(args, full_error=True)
    assert full.returncode != 0 and "Traceback" in full.stderr
