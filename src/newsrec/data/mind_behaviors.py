"""Read and validate MIND's behaviors.tsv: one impression per line (docs/mind_format.md).

behaviors.tsv is parsed with pyarrow (vectorised: MIND-large train has 83M candidate pairs,
far too many for a Python loop per token). When pyarrow or a vectorised check finds a problem,
the file is scanned once more in plain Python to find and name the first bad line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from newsrec.data.errors import MindFormatError, utf8_lines

BEHAVIORS_COLUMNS = 5
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"  # 11/15/2019 10:22:32 AM
_BEHAVIOR_NAMES = ["impression_id", "user", "time", "history", "impressions"]


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
    for number, line in utf8_lines(path):
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
