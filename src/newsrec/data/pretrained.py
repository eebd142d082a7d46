"""Pretrained word vectors (conf/embedding: GloVe) for a datamodule's vocabulary, cached.

`spec` is the embedding config as a plain dict (`kind: random` or none: no vectors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from newsrec.data import glove
from newsrec.data.datamodule import MindDataModule
from newsrec.utils.io import atomic_path, write_text

log = logging.getLogger(__name__)


def word_embeddings(
    spec: dict | None, data_dir: str | Path, seed: int, datamodule: MindDataModule
) -> torch.Tensor | None:
    """Pretrained rows for the vocabulary (conf/embedding), cached beside the preprocessed data.

    The vocabulary is built from training text, but most dev/test candidates are news never
    seen in train: every word of any split's news text (no labels read) that the pretrained
    file covers is added to it, so fresh news keep their pretrained vectors; words it does not
    cover stay <unk>. The datamodule is then preprocessed again with that vocabulary.
    """
    if spec is None or spec.get("kind") == "random":
        return None
    vocab = datamodule.data.vocab
    paths = datamodule.paths
    unseen = glove.words_outside(
        [paths.train, paths.dev, paths.test], datamodule.preprocess_config.vocab_fields, vocab.words
    )
    key = hashlib.sha256(json.dumps([spec, vocab.words, unseen]).encode()).hexdigest()
    cached = datamodule.cache_dir / f"embedding-{key[:16]}.npy"
    added_file = cached.with_suffix(".words.json")
    if cached.exists() and added_file.exists():
        matrix, added = np.load(cached), json.loads(added_file.read_text())
    else:
        glove_dir = Path(data_dir) / "glove"
        matrix, added = glove.load_pretrained(spec, glove_dir, vocab.words, unseen, seed)
        write_text(added_file, json.dumps(added))
        with atomic_path(cached) as tmp:  # the matrix last: it marks the pair complete
            np.save(tmp, matrix)
    if added:
        before = _unk_shares(datamodule)
        datamodule.use_vocabulary(dataclasses.replace(vocab, words=[*vocab.words, *added]))
        after = _unk_shares(datamodule)
        for split in before:
            log.info(
                "%s title tokens that are <unk>: %.2f%% with the training vocabulary, %.2f%% "
                "with the %s words of other splits that the pretrained file covers",
                split,
                100 * before[split],
                100 * after[split],
                f"{len(added):,}",
            )
    return torch.from_numpy(matrix)


def _unk_shares(datamodule: MindDataModule) -> dict[str, float]:
    """Share of <unk> among the title tokens of the news each dev/test impression shows."""
    title = np.asarray(datamodule.data.news["title"])
    shares = {}
    for split in ("dev", "test"):
        if split in datamodule.data.splits:
            tokens = title[datamodule.eval_news(split).numpy()]
            shares[split] = float((tokens == 1).sum() / max(1, (tokens > 0).sum()))
    return shares
