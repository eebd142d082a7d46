"""The preprocessing cache: one folder of .npy arrays per (input files, settings, vocabulary).

    <cache_root>/<key>/meta.json         settings, vocabularies, sizes, report, news features
    <cache_root>/<key>/<name>.npy        news table and per-split ragged arrays

Why .npy and not Arrow/`datasets`: every array here is a fixed-dtype numeric array consumed
by numpy slicing in the batch builder, and `np.load(mmap_mode="r")` maps it in microseconds
with no conversion. The key hashes the input files (path, size, modification time) and the
settings; the folder is written under a temporary name and renamed, so a killed run never
leaves a folder that a later run trusts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from newsrec.constants import SPLITS
from newsrec.data.arrays import PreprocessConfig, Preprocessed, SplitArrays, Vocabulary
from newsrec.data.info import NEWS_FEATURES, SplitPaths
from newsrec.utils.io import atomic_path

CACHE_VERSION = 1  # bump when the layout or the meaning of an array changes

_SPLIT_FIELDS = [f for f in SplitArrays.__dataclass_fields__ if f != "truth"]


_INPUTS = {
    "mind": ("news.tsv", "behaviors.tsv", "entity_embedding.vec", "click_probability.tsv"),
    "ebnerd": ("behaviors.parquet", "history.parquet", "click_probability.parquet"),
}


def _input_files(paths: SplitPaths) -> list[Path]:
    """Every file preprocessing reads (the cache key hashes their path, size and time)."""
    files = []
    for split in SPLITS:
        folder = getattr(paths, split)
        if folder is not None:
            files += [Path(folder) / name for name in _INPUTS[paths.layout]]
    extra = [*paths.articles, paths.document_vectors]
    return [p for p in [*files, *(Path(e) for e in extra if e is not None)] if p.exists()]


def cache_key(paths: SplitPaths, cfg: PreprocessConfig, vocab: Vocabulary | None) -> str:
    digest = hashlib.sha256()
    files = []
    for path in _input_files(paths):
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"version": CACHE_VERSION, "files": files, "config": asdict(cfg)}
    if paths.layout != "mind":  # MIND's keys stay what they were
        payload["layout"] = [paths.layout, paths.document_vector_column]
    if vocab is not None:
        payload["vocab"] = hashlib.sha256(json.dumps(asdict(vocab)).encode()).hexdigest()
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def save(data: Preprocessed, folder: Path) -> Path:
    """Write `data` under a temporary name, then rename: the folder appears only when whole."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for name, array in data.news.items():
            np.save(tmp / f"news_{name}.npy", array)
        np.save(tmp / "entity_vectors.npy", data.entity_vectors)
        for split, arrays in data.splits.items():
            for name in _SPLIT_FIELDS:
                np.save(tmp / f"{split}_{name}.npy", getattr(arrays, name))
            if arrays.truth is not None:
                np.save(tmp / f"{split}_truth.npy", arrays.truth)
        meta = {
            "version": CACHE_VERSION,
            "config": asdict(data.config),
            "vocab": asdict(data.vocab),
            "splits": list(data.splits),
            "val_start": data.val_start,
            "report": data.report,
            "news": list(data.news),
            "features": list(data.features),
        }
        # meta.json is written last: a folder without it is never trusted.
        (tmp / "meta.json").write_text(json.dumps(meta))
    data.path = folder
    return folder


def load(folder: Path) -> Preprocessed:
    meta = json.loads((folder / "meta.json").read_text())
    cfg_dict = meta["config"]
    cfg_dict["vocab_fields"] = tuple(cfg_dict["vocab_fields"])

    def arr(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r")

    news = {name: arr(f"news_{name}") for name in meta.get("news", NEWS_FEATURES)}
    splits = {}
    for split in meta["splits"]:
        fields_ = {name: arr(f"{split}_{name}") for name in _SPLIT_FIELDS}
        truth_path = folder / f"{split}_truth.npy"
        truth = np.load(truth_path, mmap_mode="r") if truth_path.exists() else None
        splits[split] = SplitArrays(**fields_, truth=truth)
    return Preprocessed(
        config=PreprocessConfig(**cfg_dict),
        vocab=Vocabulary(**meta["vocab"]),
        news=news,
        entity_vectors=arr("entity_vectors"),
        splits=splits,
        val_start=meta["val_start"],
        report=meta["report"],
        path=folder,
        features=tuple(meta.get("features", NEWS_FEATURES)),
    )


def same_vocabulary(folder: Path, vocab: Vocabulary) -> bool:
    """Whether the cache in `folder` was built with exactly the vocabularies `vocab`."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("vocab") == asdict(vocab)
