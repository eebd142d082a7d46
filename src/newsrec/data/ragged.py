"""Ragged arrays: rows of different lengths stored as one flat `values` array plus `offsets`.

Row i is `values[offsets[i]:offsets[i + 1]]`; `offsets` is int64 [rows + 1] starting at 0.
Histories, candidates and the synthetic world's per-news draws are all stored this way, and
every operation here is vectorised: no Python loop runs per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def lengths_to_offsets(lengths: np.ndarray) -> np.ndarray:
    """int64 [len(lengths) + 1] row boundaries of rows with these lengths."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def take_rows(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The values of rows `rows`, concatenated."""
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    index = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
    return np.asarray(values)[index]


def pad_rows(
    offsets: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    width: int,
    right: bool = False,
    dtype: type = np.int64,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows `rows` as a [len(rows), width] matrix and its mask (True on real values).

    Left padding by default (the last `width` values, most recent last); `right=True` keeps
    the first `width` values at the start of the row.
    """
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = np.minimum(ends - starts, width)
    cols = np.arange(width)[None, :]
    if right:
        mask = cols < lengths[:, None]
        index = starts[:, None] + cols
    else:
        mask = cols >= (width - lengths)[:, None]
        index = ends[:, None] - width + cols
    out = np.zeros((len(rows), width), dtype=dtype)
    if len(values):
        out[mask] = values[index[mask]]
    return out, mask


def keep_last(
    offsets: np.ndarray, values: np.ndarray, keep: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop values where `keep` is False, then keep at most the last `limit` of each row.

    Returns the new (offsets, values).
    """
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    starts, ends = kept_before[offsets[:-1]], kept_before[offsets[1:]]
    values = values[keep]
    starts = np.maximum(starts, ends - limit)
    lengths = ends - starts
    new_offsets = lengths_to_offsets(lengths)
    gather = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1] - starts, lengths)
    return new_offsets, values[gather]


def row_chunks(offsets: np.ndarray, max_values: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges [first, last) holding at most `max_values` values each (one row
    at least, however long): how a split too large to sort at once is processed in parts."""
    first, rows = 0, len(offsets) - 1
    while first < rows:
        last = int(np.searchsorted(offsets, offsets[first] + max_values, side="right")) - 1
        last = min(max(last, first + 1), rows)
        yield first, last
        first = last


def slices(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` covering range(n) (one empty slice when n is 0):
    how flat arrays too large to process at once are walked."""
    return [slice(start, start + size) for start in range(0, max(n, 1), size)]
