"""Per-news features that RADio's metrics read, computed once per news table and cached.

Row for row with the news table (row 0, the padding news, has none):

    complexity   float32 [N]     Flesch reading ease of title + abstract (`textstat`), NaN for
                                 an empty text; RADio's calibration of text complexity
    sentiment    float32 [N]     VADER's compound polarity of title + abstract, in [-1, 1]
                                 (`vaderSentiment`, a lexicon model, offline); RADio's
                                 activation reads its absolute value
    entity_types float32 [N, T]  mentions of each entity type (MIND's `Type` of every title
                                 and abstract entity, one per occurrence); `types` names them
    voices       float32 [N, 2]  (minority, majority) mentions of persons (type "P"): the
                                 alternative-voices variant of `newsrec.evaluation.radio`

`textstat` and `vaderSentiment` are the optional extra `newsrec[radio]`; without them the
complexity or sentiment column is all NaN and the metrics reading it are skipped (said once
in the log). Entity types need nothing beyond the news files.

The cache folder `<cache_dir>/news_features/<key>/` is keyed by a hash of the news text
itself (title, abstract and entity columns of every row, in table order) and the feature
version, written under a temporary name and renamed (`newsrec.utils.io.atomic_path`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.utils.io import atomic_path
from newsrec.utils.progress import progress_bar

try:
    import fcntl
except ImportError:  # Windows: computed without a lock
    fcntl = None

log = logging.getLogger(__name__)

VERSION = 1  # bump when a feature's definition changes
PERSON = "P"  # MIND's entity type of a person (Wikidata's Q5, human)
MAJORITY_SHARE = 0.5  # the most-mentioned persons that make up this share of person mentions
_ARRAYS = ("complexity", "sentiment", "entity_types", "voices")


@dataclass
class NewsRow:
    """What the features read of one news.tsv row."""

    title: str
    abstract: str
    entities: str  # the two entity JSON columns, joined by a tab


@dataclass
class NewsFeatures:
    """The feature arrays of a news table (see the module doc) and the entity type names."""

    complexity: np.ndarray
    sentiment: np.ndarray
    entity_types: np.ndarray
    voices: np.ndarray
    types: list[str]

    def __len__(self) -> int:
        return len(self.complexity)


def read_rows(files: Sequence[str | Path]) -> list[NewsRow]:
    """The news rows of news.tsv files in news-table order: first appearance over the files
    (train, dev, test as preprocessing reads them), row 0 the empty padding news. EB-NeRD's
    articles.parquet files are read as its preprocessing reads them (title, subtitle; no
    entity annotations in MIND's form)."""
    if files and all(Path(f).suffix == ".parquet" for f in files):
        return _article_rows(files)
    rows, seen = [NewsRow("", "", "")], set()
    for path in files:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                cols = line.rstrip("\n").rstrip("\r").split("\t")
                if len(cols) < 8 or not cols[0] or cols[0] in seen:
                    continue  # blank lines; the reader refuses malformed ones before this
                seen.add(cols[0])
                rows.append(NewsRow(cols[3], cols[4], f"{cols[6]}\t{cols[7]}"))
    return rows


def _article_rows(files: Sequence[str | Path]) -> list[NewsRow]:
    from newsrec.data.ebnerd.reader import read_articles

    articles = read_articles(tuple(Path(f) for f in files))
    texts = zip(articles.title, articles.subtitle, strict=True)
    return [NewsRow("", "", ""), *(NewsRow(title, subtitle, "") for title, subtitle in texts)]


def cache_key(rows: list[NewsRow]) -> str:
    digest = hashlib.sha256(f"news_features v{VERSION}".encode())
    for row in rows:
        digest.update(f"{row.title}\x1f{row.abstract}\x1f{row.entities}\x1e".encode())
    return digest.hexdigest()[:16]


def load_or_compute(
    files: Sequence[str | Path], cache_dir: str | Path, progress: bool = True
) -> NewsFeatures:
    """The features of the news table of `files`, from the cache or computed (Rich bars)."""
    rows = read_rows(files)
    folder = Path(cache_dir) / "news_features" / cache_key(rows)
    with _locked(folder.parent):  # DDP ranks: the first computes, the others then load
        return _load_or_compute(rows, folder, progress)


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:  # closing it releases the lock
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a file system without locks: go on
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_or_compute(rows: list[NewsRow], folder: Path, progress: bool) -> NewsFeatures:
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
            arrays = {n: np.load(folder / f"{n}.npy") for n in _ARRAYS}
            return NewsFeatures(**arrays, types=meta["types"])
        except (OSError, ValueError, KeyError) as err:  # damaged: rebuilt, not trusted
            log.warning("news features in %s unreadable (%s): computing them again", folder, err)
    log.info("news features of %s news (cache: %s)", f"{len(rows) - 1:,}", folder)
    features = compute(rows, progress)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(features, name))
        (tmp / "meta.json").write_text(json.dumps({"version": VERSION, "types": features.types}))
    return features


def compute(rows: list[NewsRow], progress: bool = False) -> NewsFeatures:
    """Every feature of `rows` (row 0 the padding news)."""
    with progress_bar(progress) as bar:
        complexity = _text_feature(rows, _readability(), "text complexity (textstat)", bar)
        sentiment = _text_feature(rows, _polarity(), "sentiment (VADER)", bar)
        task = bar.add_task("entity types", total=1)
        types, voices, names = entity_features(rows)
        bar.advance(task)
    return NewsFeatures(complexity, sentiment, types, voices, names)


def _readability():
    try:
        import textstat
    except ImportError:
        log.warning(
            "textstat is not installed: calibration of text complexity is skipped "
            "(pip install 'newsrec[radio]')"
        )
        return None
    return textstat.flesch_reading_ease


def _polarity():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        log.warning(
            "vaderSentiment is not installed: activation is skipped (pip install 'newsrec[radio]')"
        )
        return None
    analyzer = SentimentIntensityAnalyzer()
    return lambda text: analyzer.polarity_scores(text)["compound"]


def _text_feature(rows: list[NewsRow], function, name: str, bar) -> np.ndarray:
    """`function(title + " " + abstract)` per row as float32; NaN for row 0, an empty text,
    or every row when `function` is None (its package is missing)."""
    out = np.full(len(rows), np.nan, dtype=np.float32)
    if function is None:
        return out
    task = bar.add_task(name, total=len(rows))
    for i, row in enumerate(rows[1:], start=1):
        text = f"{row.title} {row.abstract}".strip()
        if text:
            value = float(function(text))
            out[i] = value if math.isfinite(value) else np.nan
        if i % 1000 == 0:
            bar.advance(task, 1000)
    bar.update(task, completed=len(rows))
    return out


def _mentions(entities: str) -> list[tuple[str, str, int]]:
    """(type, WikidataId, occurrences) of each entity of a row's two entity columns."""
    found = []
    for column in entities.split("\t"):
        if not column.strip():
            continue
        try:
            objects = json.loads(column)
        except ValueError:
            continue  # the reader refuses such rows before evaluation gets here
        for entity in objects:
            count = max(1, len(entity.get("OccurrenceOffsets") or []))
            found.append((str(entity.get("Type", "")), str(entity.get("WikidataId", "")), count))
    return found


def entity_features(rows: list[NewsRow]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(entity type mentions [N, T], person voices [N, 2], type names) of every row.

    Majority voices are the most-mentioned persons of the table that together make up
    `MAJORITY_SHARE` of all person mentions; minority voices are every other person.
    """
    mentions = [_mentions(row.entities) for row in rows]
    names = sorted({t for row in mentions for t, _, _ in row if t})
    index = {t: i for i, t in enumerate(names)}
    persons: Counter = Counter()
    for row in mentions:
        for kind, qid, count in row:
            if kind == PERSON:
                persons[qid] += count
    majority, covered, total = set(), 0, sum(persons.values())
    for qid, count in sorted(persons.items(), key=lambda item: (-item[1], item[0])):
        if covered >= MAJORITY_SHARE * total:
            break
        majority.add(qid)
        covered += count
    types = np.zeros((len(rows), max(1, len(names))), dtype=np.float32)
    voices = np.zeros((len(rows), 2), dtype=np.float32)
    for i, row in enumerate(mentions):
        for kind, qid, count in row:
            if kind in index:
                types[i, index[kind]] += count
            if kind == PERSON:
                voices[i, int(qid in majority)] += count
    return types, voices, names
