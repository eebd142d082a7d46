"""Read and validate MIND's files: news.tsv, behaviors.tsv and entity_embedding.vec (and a
synthetic world's click_probability.tsv).

Formats: docs/mind_format.md. The reader is strict about what would silently corrupt
training (a wrong column count, a label that is not 0/1, a time it cannot parse, entity JSON
it cannot read, bytes that are not UTF-8): those raise `MindFormatError` naming the file, the
line and what to do. Oddities real MIND has and a model can live with are counted in a
`Report` and logged once by preprocessing, never line by line:

- duplicate news IDs in news.tsv: the first row wins;
- empty titles: kept; the news is encoded from padding alone (a defined, finite vector);
- empty histories: kept; the user encoder has a defined output for them;
- history IDs missing from news.tsv: dropped from the history (counted in preprocessing);
- candidate IDs missing from news.tsv: kept and scored as an empty news (counted).

behaviors.tsv is parsed with pyarrow (vectorised: MIND-large train has 83M candidate pairs,
far too many for a Python loop per token). When pyarrow or a vectorised check finds a problem,
the file is scanned once more in plain Python to find and name the first bad line.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

NEWS_COLUMNS = 8
BEHAVIORS_COLUMNS = 5
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"  # 11/15/2019 10:22:32 AM
_BEHAVIOR_NAMES = ["impression_id", "user", "time", "history", "impressions"]


class DataError(ValueError):
    """A problem with the user's data or data settings: train.py / eval.py print its message
    (what, where, what to do) without a traceback (HYDRA_FULL_ERROR=1 keeps the traceback)."""


class MindFormatError(DataError):
    """A MIND file that cannot be read as MIND. The message names file, line and remedy."""

    def __init__(self, path: Path | str, line: int | None, problem: str, remedy: str = ""):
        where = f"{path}:{line}" if line is not None else str(path)
        remedy = remedy or "fix or remove that line, or re-download the split"
        super().__init__(f"{where}: {problem}. To fix: {remedy}.")
        self.path, self.line = Path(path), line


@dataclass
class Report:
    """Recoverable oddities, counted; preprocessing logs `lines()`, one line per kind."""

    counts: Counter = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] += int(n)

    def lines(self) -> list[str]:
        return [f"{what}: {n:,}" for what, n in sorted(self.counts.items())]


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


@dataclass
class Behaviors:
    """Impressions of one behaviors.tsv (or one chunk of it), ragged lists as offsets."""

    impression_id: np.ndarray  # int64 [I]
    user: pa.Array  # string [I]
    time: np.ndarray  # int64 [I], seconds since the epoch (UTC, as written)
    history: pa.ListArray  # list<string> [I], oldest first
    candidates: pa.ListArray  # list<string> [I], in the file's order
    labels: np.ndarray | None  # int8 [total candidates] or None for an unlabeled split

    def __len__(self) -> int:
        return len(self.impression_id)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for every line; undecodable bytes raise."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MindFormatError(
                    path,
                    number,
                    f"bytes that are not UTF-8 at column {e.start + 1}",
                    "re-download the file; MIND files are UTF-8",
                ) from None
            yield number, text.rstrip("\n").rstrip("\r")


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
    for number, line in _lines(path):
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
    for number, line in _lines(path):
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


# --- behaviors.tsv -------------------------------------------------------------------------


def _check_behaviors_line(path: Path, number: int, line: str, labeled: bool | None) -> bool:
    """Validate one behaviors line in plain Python; returns whether it is labeled."""
    cols = line.split("\t")
    if len(cols) != BEHAVIORS_COLUMNS:
        raise MindFormatError(
            path, number, f"expected {BEHAVIORS_COLUMNS} tab-separated columns, found {len(cols)}"
        )
    impression_id, _user, time, _history, impressions = cols
    if not impression_id.strip().isdigit():
        raise MindFormatError(path, number, f"impression ID {impression_id!r} is not an integer")
    try:
        datetime.strptime(time, TIME_FORMAT)
    except ValueError:
        raise MindFormatError(
            path, number, f"time {time!r} is not in the form 11/15/2019 10:22:32 AM"
        ) from None
    tokens = impressions.split()
    if not tokens:
        raise MindFormatError(path, number, "an impression without candidates")
    for token in tokens:
        has_label = "-" in token
        if labeled is None:
            labeled = has_label
        if has_label != labeled:
            raise MindFormatError(
                path, number, "labeled and unlabeled candidates mixed in one file"
            )
        if has_label and token.rsplit("-", 1)[1] not in ("0", "1"):
            raise MindFormatError(
                path, number, f"candidate {token!r} has a label that is not 0 or 1"
            )
    return bool(labeled)


def _locate_behaviors_error(path: Path, cause: str) -> MindFormatError:
    labeled = None
    for number, line in _lines(path):
        labeled = _check_behaviors_line(path, number, line, labeled)
    return MindFormatError(path, None, cause)


def _split_tokens(column: pa.ChunkedArray | pa.Array) -> pa.ListArray:
    """Whitespace-separated tokens of each row, empty rows giving empty lists."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    lists = pc.utf8_split_whitespace(pc.if_else(blank, pa.scalar(None, pa.string()), column))
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = pc.list_flatten(lists)
    if len(flat) and not pc.all(pc.not_equal(flat, "")).as_py():
        keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
        kept = np.concatenate([[0], np.cumsum(keep)])
        offsets = kept[offsets].astype(np.int32)
        flat = flat.filter(pa.array(keep))
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def _parse_behaviors_table(path: Path, table: pa.Table, labeled: bool | None) -> Behaviors:
    def fail(cause: str) -> MindFormatError:
        return _locate_behaviors_error(path, cause)

    try:
        impression_id = pc.cast(pc.utf8_trim_whitespace(table["impression_id"]), pa.int64())
    except pa.ArrowInvalid:
        raise fail("an impression ID that is not an integer") from None
    times = pc.strptime(table["time"], format=TIME_FORMAT, unit="s", error_is_null=True)
    if times.null_count:
        raise fail("a time that cannot be parsed")
    history = _split_tokens(table["history"])
    tokens = _split_tokens(table["impressions"])
    lengths = np.diff(tokens.offsets.to_numpy())
    if len(lengths) and lengths.min() == 0:
        raise fail("an impression without candidates")
    flat = tokens.values
    has_dash = pc.match_substring(flat, "-").to_numpy(zero_copy_only=False)
    file_labeled = bool(has_dash[0]) if labeled is None and len(has_dash) else labeled
    labels = None
    if file_labeled:
        if not has_dash.all():
            raise fail("labeled and unlabeled candidates mixed")
        parts = pc.split_pattern(flat, "-", max_splits=1, reverse=True)
        ids, label_text = pc.list_element(parts, 0), pc.list_element(parts, 1)
        is_one, is_zero = pc.equal(label_text, "1"), pc.equal(label_text, "0")
        if not pc.all(pc.or_(is_one, is_zero)).as_py():
            raise fail("a label that is not 0 or 1")
        labels = is_one.to_numpy(zero_copy_only=False).astype(np.int8)
        flat = ids
    elif has_dash.any():
        raise fail("labeled and unlabeled candidates mixed")
    candidates = pa.ListArray.from_arrays(tokens.offsets, flat)
    return Behaviors(
        impression_id=impression_id.to_numpy(),
        user=table["user"].combine_chunks(),
        time=times.cast(pa.int64()).to_numpy(),
        history=history,
        candidates=candidates,
        labels=labels,
    )


def iter_behaviors(path: Path | str, block_size: int = 64 << 20) -> Iterator[Behaviors]:
    """Read behaviors.tsv in chunks of about `block_size` bytes (bounded memory on MIND-large)."""
    path = Path(path)
    string = pa.string()
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=_BEHAVIOR_NAMES, block_size=block_size),
            parse_options=pcsv.ParseOptions(
                delimiter="\t", quote_char=False, ignore_empty_lines=False
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: string for name in _BEHAVIOR_NAMES},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        labeled = None
        for batch in reader:
            chunk = _parse_behaviors_table(path, pa.Table.from_batches([batch]), labeled)
            labeled = chunk.labels is not None
            yield chunk
    except pa.ArrowInvalid as e:
        raise _locate_behaviors_error(path, f"pyarrow could not read it ({e})") from None


def read_behaviors(path: Path | str) -> Behaviors:
    """The whole behaviors.tsv as one `Behaviors` (use `iter_behaviors` for MIND-large)."""
    chunks = list(iter_behaviors(path))
    if not chunks:
        raise MindFormatError(path, None, "the file holds no impressions")
    if len(chunks) == 1:
        return chunks[0]
    return Behaviors(
        impression_id=np.concatenate([c.impression_id for c in chunks]),
        user=pa.concat_arrays([c.user for c in chunks]),
        time=np.concatenate([c.time for c in chunks]),
        history=pa.concat_arrays([c.history for c in chunks]),
        candidates=pa.concat_arrays([c.candidates for c in chunks]),
        labels=None if chunks[0].labels is None else np.concatenate([c.labels for c in chunks]),
    )


def check_unique_impressions(path: Path, impression_id: np.ndarray) -> None:
    """Metrics group candidates by impression id and DDP gathers by it: ids must be unique."""
    ids, first, counts = np.unique(impression_id, return_index=True, return_counts=True)
    if (counts == 1).all():
        return
    twice = int(np.flatnonzero(counts > 1)[0])
    again = int(np.flatnonzero(impression_id == ids[twice])[1])  # rows are lines, in order
    raise MindFormatError(
        path,
        again + 1,
        f"impression ID {int(ids[twice])} again (first on line {int(first[twice]) + 1}); "
        "impression IDs must be unique within a split",
        "remove or renumber the repeated impression, or re-download the split",
    )


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
