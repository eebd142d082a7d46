"""News text tokenised by a pretrained language model's own tokenizer (PLM news encoders).

The PLM news encoder (`newsrec.models.plm`) cannot read the word ids of the GloVe vocabulary:
it needs the ids of its own tokenizer (WordPiece, BPE, ...). This module adds two arrays to
the news table, row for row with the others (row 0 = the padding news, all padding):

    plm_title       int32 [num_news, max_len]  the tokenizer's ids, special tokens included
    plm_title_mask  int8  [num_news, max_len]  1 on real tokens, 0 on padding

`fields=("title", "abstract")` tokenises the pair (title, abstract) into the same arrays,
truncating the longer of the two first. The arrays are cached on disk under
`<cache_dir>/plm/<key>/`, the key hashing the tokenizer (hub name, or a local folder's
tokenizer files), `max_len`, `fields` and the news text itself, so a changed news.tsv or
tokenizer never reuses stale ids.

Why not `datasets.Dataset.map(batched=True)`: a fast (Rust) tokenizer already tokenises a
list of 65k titles in a second or two, in parallel threads; `map` would add a conversion to
Arrow and back, and its fingerprint cache only applies to file-backed datasets, while the
`.npy` cache here memory-maps in microseconds like every other array of the news table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.data.info import NewsInputs, SplitPaths
from newsrec.data.mind import read_news

log = logging.getLogger(__name__)

PLM_FEATURES = ("plm_title", "plm_title_mask")
# Files that define a tokenizer in a local Hugging Face folder (the key hashes the ones present).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


@dataclass(frozen=True)
class PlmTokenConfig:
    tokenizer: str  # hub name ("bert-base-uncased") or a local Hugging Face folder
    max_len: int = 30  # tokens kept, special tokens included (NRMS's 30 title words)
    fields: tuple[str, ...] = ("title",)  # ("title",) or ("title", "abstract")

    @classmethod
    def from_inputs(cls, inputs: NewsInputs) -> PlmTokenConfig | None:
        """The tokenisation a news encoder declares (NewsEncoder.declare); None without one."""
        if inputs.tokenizer is None:
            return None
        return cls(inputs.tokenizer, inputs.max_len, tuple(inputs.token_fields))


def load_tokenizer(name: str):
    """`AutoTokenizer` for a hub name or a local folder, with a clear error when it is neither."""
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise ImportError("PLM news encoders need transformers: pip install -e '.[plm]'") from err
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as err:
        raise OSError(
            f"model.news_encoder.pretrained={name}: no tokenizer there. Give a local Hugging Face "
            "folder (tokenizer.json or vocab.txt, config.json, weights; README: 'PLM news "
            "encoders') or a hub name while online (HF_HUB_OFFLINE unset)."
        ) from err


def tokenizer_identity(name: str) -> list:
    """What identifies a tokenizer for the cache key: a hub name as given, or the resolved path
    plus the size and content hash of a local folder's tokenizer files."""
    folder = Path(name)
    if not folder.is_dir():
        return [name]
    files = []
    for file in TOKENIZER_FILES:
        path = folder / file
        if path.is_file():
            files.append([file, hashlib.sha256(path.read_bytes()).hexdigest()])
    return [str(folder.resolve()), files]


def news_texts(paths: SplitPaths, fields: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The text `fields` of every news-table row, row 0 (padding news) empty.

    Rows follow the news table of `newsrec.data.preprocess`: news in order of first
    appearance over the train, dev and test news.tsv files (a news in several splits keeps
    its first row). The decode test of tests/test_plm.py checks the two agree.
    """
    unknown = set(fields) - {"title", "abstract"}
    if unknown or not fields:
        raise ValueError(f"PLM fields must be title and/or abstract, got {list(fields)}")
    if paths.layout == "ebnerd":  # articles.parquet rows: title, subtitle
        from newsrec.data.ebnerd.build import FIELDS
        from newsrec.data.ebnerd.reader import read_articles

        articles = read_articles(paths.articles)
        columns = [getattr(articles, FIELDS[name]) for name in fields]
        return [tuple("" for _ in fields), *zip(*columns, strict=True)]
    seen: set[str] = set()
    texts: list[tuple[str, ...]] = [tuple("" for _ in fields)]
    for folder in (paths.train, paths.dev, paths.test):
        if folder is None:
            continue
        news = read_news(Path(folder) / "news.tsv")
        columns = [getattr(news, name) for name in fields]
        for i, news_id in enumerate(news.ids):
            if news_id not in seen:
                seen.add(news_id)
                texts.append(tuple(column[i] for column in columns))
    return texts


def tokenize(texts: list[tuple[str, ...]], tokenizer, max_len: int) -> dict[str, np.ndarray]:
    """Token ids and masks [len(texts), max_len] of each row's text (one field or a pair)."""
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if len(texts[0]) > 1 else None
    encoded = tokenizer(
        first,
        second,
        max_length=max_len,
        truncation="longest_first" if second is not None else True,
        padding="max_length",
        return_attention_mask=True,
    )
    ids = np.asarray(encoded["input_ids"], dtype=np.int32)
    mask = np.asarray(encoded["attention_mask"], dtype=np.int8)
    # Row 0 is the padding news: no token at all (it stands for a news missing from news.tsv).
    ids[0] = tokenizer.pad_token_id or 0
    mask[0] = 0
    return {"plm_title": ids, "plm_title_mask": mask}


def load_or_tokenize(
    paths: SplitPaths, config: PlmTokenConfig, cache_dir: Path | str, num_news: int
) -> dict[str, np.ndarray]:
    """The PLM arrays of the news table (see the module docstring), from cache or built."""
    texts = news_texts(paths, config.fields)
    if len(texts) != num_news:
        raise ValueError(
            f"PLM tokenisation found {len(texts)} news rows but the news table has {num_news}: "
            "the news.tsv files changed since preprocessing; delete the cache folder "
            f"{cache_dir} and run again"
        )
    payload = [
        tokenizer_identity(config.tokenizer),
        config.max_len,
        list(config.fields),
        hashlib.sha256(json.dumps(texts).encode()).hexdigest(),
    ]
    key = hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "plm" / key
    if (folder / "done").exists():
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in PLM_FEATURES}
    log.info("tokenising %s news with %s (cache: %s)", f"{num_news:,}", config.tokenizer, folder)
    arrays = tokenize(texts, load_tokenizer(config.tokenizer), config.max_len)
    truncated = int(arrays["plm_title_mask"][:, -1].sum())
    if truncated:
        log.info("%s news texts cut at max_len=%d tokens", f"{truncated:,}", config.max_len)
    # Written under a temporary name and renamed: a killed run leaves no folder that is trusted.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    (tmp / "done").write_text(json.dumps(payload))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return arrays
