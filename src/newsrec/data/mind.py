"""Read and validate MIND's files: news.tsv and entity_embedding.vec here, behaviors.tsv in
`newsrec.data.mind_behaviors` (and a synthetic world's click_probability.tsv).

Formats: docs/mind_format.md. The reader is strict about what would silently corrupt
training (a wrong column count, a label that is not 0/1, a time it cannot parse, entity JSON
it cannot read, bytes that are not UTF-8): those raise `MindFormatError` (`newsrec.data.errors`)
naming the file, the line and what to do. Oddities real MIND has and a model can live with are
counted in a `Report` and logged once by preprocessing, never line by line:

- duplicate news IDs in news.tsv: the first row wins;
- empty titles: kept; the news is encoded from padding alone (a defined, finite vector);
- empty histories: kept; the user encoder has a defined output for them;
- history IDs missing from news.tsv: dropped from the history (counted in preprocessing);
- candidate IDs missing from news.tsv: kept and scored as an empty news (counted).

The readers, their errors and `Report` are all importable from here, the one door to MIND.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.data.errors import DataError, MindFormatError, Report, utf8_lines
from newsrec.data.mind_behaviors import (
    BEHAVIORS_COLUMNS,
    TIME_FORMAT,
    Behaviors,
    check_unique_impressions,
    iter_behaviors,
    read_behaviors,
)

__all__ = [
    "BEHAVIORS_COLUMNS",
    "NEWS_COLUMNS",
    "TIME_FORMAT",
    "TOKEN_PATTERN",
    "Behaviors",
    "DataError",
    "MindFormatError",
    "News",
    "Report",
    "check_unique_impressions",
    "iter_behaviors",
    "load_click_probabilities",
    "read_behaviors",
    "read_entity_embeddings",
    "read_news",
    "token_spans",
    "tokenize",
]

NEWS_COLUMNS = 8


@dataclass
class News:
    """The rows of one news.tsv, in file order, duplicates removed (the first row wins)."""

    ids: list[str]
    category: list[str]
    subcategory: list[str]
    title: list[str]
    abstract: list[str]
    # per news: (WikidataId, start char, end char) of each title entity occurrence
    title_entities: list[list[tuple[str, int, int]]]
    abstract_entities: list[list[str]]  # WikidataIds only: no model aligns them to words


def _entities(path: Path, number: int, text: str, column: str) -> list[dict]:
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise MindFormatError(path, number, f"{column} is not valid JSON ({e.msg})") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MindFormatError(path, number, f"{column} is not a JSON list of entity objects")
    for entity in value:
        if "WikidataId" not in entity:
            raise MindFormatError(path, number, f"an entity in {column} has no WikidataId")
    return value


def read_news(path: Path | str, report: Report | None = None) -> News:
    """Read a news.tsv: 8 tab-separated columns (mind.md), entity columns in JSON."""
    path = Path(path)
    report = report if report is not None else Report()
    news = News([], [], [], [], [], [], [])
    seen: set[str] = set()
    for number, line in utf8_lines(path):
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != NEWS_COLUMNS:
            raise MindFormatError(
                path, number, f"expected {NEWS_COLUMNS} tab-separated columns, found {len(cols)}"
            )
        news_id, category, subcategory, title, abstract, _url, title_ents, abstract_ents = cols
        if not news_id:
            raise MindFormatError(path, number, "empty news ID")
        title_entities = _entities(path, number, title_ents, "the title entities (column 7)")
        abstract_entities = _entities(
            path, number, abstract_ents, "the abstract entities (column 8)"
        )
        if news_id in seen:
            report.add("duplicate news rows (first kept)")
            continue
        seen.add(news_id)
        if not title.strip():
            report.add("news with an empty title")
        spans = []
        for entity in title_entities:
            surfaces = entity.get("SurfaceForms") or [entity.get("Label", "")]
            for i, start in enumerate(entity.get("OccurrenceOffsets") or []):
                surface = surfaces[min(i, len(surfaces) - 1)]
                spans.append((entity["WikidataId"], int(start), int(start) + len(surface)))
        news.ids.append(news_id)
        news.category.append(category)
        news.subcategory.append(subcategory)
        news.title.append(title)
        news.abstract.append(abstract)
        news.title_entities.append(spans)
        news.abstract_entities.append([e["WikidataId"] for e in abstract_entities])
    if not news.ids:
        remedy = "restore or re-download the split; a MIND news.tsv lists every news it names"
        raise MindFormatError(path, None, "no news in this file (it is empty)", remedy)
    return news


def read_entity_embeddings(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Read entity_embedding.vec: a WikidataId then its floats (100 in MIND), tab-separated.

    An empty file gives no ids and a [0, 0] matrix (the caller counts it: no entity vectors).
    A nan or inf is refused: it would reach DKN's input and turn every score into nan.
    """
    path = Path(path)
    ids: list[str] = []
    rows: list[list[float]] = []
    for number, line in utf8_lines(path):
        cols = line.strip().split("\t")
        if not cols[0]:
            continue
        try:
            vector = [float(x) for x in cols[1:]]
        except ValueError:
            raise MindFormatError(path, number, "a value that is not a number") from None
        if not np.isfinite(vector).all():
            raise MindFormatError(
                path,
                number,
                f"a value that is not finite ({cols[0]} has nan or inf)",
                "re-download the split, or delete that entity's line",
            )
        if rows and len(vector) != len(rows[0]):
            raise MindFormatError(
                path, number, f"{len(vector)} values where earlier rows have {len(rows[0])}"
            )
        ids.append(cols[0])
        rows.append(vector)
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.asarray(rows, dtype=np.float32)


# --- click_probability.tsv (synthetic worlds) -------------------------------------------


def load_click_probabilities(split_dir: Path) -> dict[int, np.ndarray]:
    """Impression id -> true click probability of each candidate, in behaviors.tsv order.

    Only a synthetic world has `click_probability.tsv` (`<impression id>\\t<p1 p2 ...>`, one
    line per impression of behaviors.tsv); it is what the oracle metrics rank by.
    """
    path = Path(split_dir) / "click_probability.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only synthetic worlds have click probabilities")
    out: dict[int, np.ndarray] = {}
    ids: list[int] = []
    counts: list[int] = []
    texts: list[str] = []

    def flush(last_line: int) -> None:
        # parse many lines at once (memory stays bounded on MIND-large-sized worlds)
        try:
            flat = np.fromstring(" ".join(texts), sep=" ")
        except ValueError:
            flat = np.zeros(0)
        if len(flat) != sum(counts):
            first = last_line - len(ids) + 1
            raise ValueError(f"{path}: a value in lines {first}-{last_line} is not a number")
        out.update(zip(ids, np.split(flat, np.cumsum(counts)[:-1]), strict=True))
        ids.clear()
        counts.clear()
        texts.clear()

    line_no = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            iid, sep, values = line.rstrip("\n").partition("\t")
            if not sep or not iid.isdigit():
                raise ValueError(f"{path}:{line_no}: expected '<impression id>\\t<p1 p2 ...>'")
            ids.append(int(iid))
            counts.append(values.count(" ") + 1 if values else 0)
            texts.append(values)
            if len(ids) == 50_000:
                flush(line_no)
        if ids:
            flush(line_no)
    return out


# --- tokens ---------------------------------------------------------------------------------

TOKEN_PATTERN = re.compile(r"[\w]+|[.,!?;|]")


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens, the tokenizer of the NRMS/MIND code bases."""
    return TOKEN_PATTERN.findall(text.lower())


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """Tokens with their character spans in `text` (to align title entities with words)."""
    return [(m.group().lower(), m.start(), m.end()) for m in TOKEN_PATTERN.finditer(text)]
