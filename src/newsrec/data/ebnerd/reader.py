"""Read and validate EB-NeRD's parquet files into flat numpy arrays (pyarrow, vectorised).

Strict about what would silently corrupt training, with a message naming the file, the
column or the row (1-based, in file order) and what to do: a missing file or column, a
column of another type, a null id or time, an empty in-view list, a clicked article that is
not in view, a repeated impression id, a document vector with NaN or of another length.
What a model can live with is left to preprocessing to count (newsrec.data.ebnerd.build).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from newsrec.data.ebnerd import schema as S
from newsrec.data.ebnerd.schema import EbnerdFormatError


@dataclass
class Ragged:
    """A list column as offsets [n + 1] and values [sum]."""

    offsets: np.ndarray
    values: np.ndarray

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class Impressions:
    """One behaviors.parquet, in file order."""

    impression_id: np.ndarray  # int64 [I]
    user: np.ndarray  # int64 [I], the file's user_id
    time: np.ndarray  # int64 [I], seconds (naive timestamps, as written)
    inview: Ragged  # article ids
    clicked: Ragged | None  # None for the unlabeled test set
    labels: np.ndarray | None  # int8 per in-view article, 1 = clicked (None: unlabeled)
    beyond_accuracy: np.ndarray | None  # bool [I], the test set's is_beyond_accuracy


def read_table(
    path: Path, wanted: dict[str, str], optional: dict[str, str] | None = None, rows=None
):
    """The `wanted` (and present `optional`) columns of a parquet file, types checked
    (`rows=0`: only checked, nothing read)."""
    path = Path(path)
    if not path.is_file():
        raise EbnerdFormatError(
            path,
            "file",
            "the file is missing",
            "give the folder in the published layout (train/ and validation/ with "
            "behaviors.parquet and history.parquet, articles.parquet beside them)",
        )
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise EbnerdFormatError(path, "file", f"not a readable parquet file ({err})") from None
    present = {k: v for k, v in (optional or {}).items() if k in schema.names}
    S.check_columns(path, schema, {**wanted, **present})
    if rows == 0:
        return None
    return pq.read_table(path, columns=[*wanted, *present])


def release_arrow_memory() -> None:
    """Give Arrow's freed buffers back to the system: its allocator (mimalloc, jemalloc)
    keeps them otherwise, and numpy's arrays, allocated elsewhere, cannot reuse them."""
    pa.default_memory_pool().release_unused()


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _column(path: Path, table: pa.Table, name: str, ids: np.ndarray | None = None) -> np.ndarray:
    """A non-null scalar column as numpy; a null names its row (and impression id)."""
    column = table[name].combine_chunks()
    if column.null_count:
        row = _first_true(column.is_null().to_numpy(zero_copy_only=False))
        where = f"row {row + 1}" + (f", impression {ids[row]}" if ids is not None else "")
        raise EbnerdFormatError(path, where, f"{name} is empty (null)")
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("s")).cast(pa.int64())
    return column.to_numpy(zero_copy_only=False)


def _ragged(path: Path, table: pa.Table, name: str, ids: np.ndarray, dtype=np.int64) -> Ragged:
    """A list column; a null list counts as empty, a null inside a list names its row."""
    column = table[name].combine_chunks()
    if isinstance(column, pa.ChunkedArray):  # an empty table
        column = pa.array([], column.type)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = pc.list_flatten(column)
    if values.null_count:
        owner = np.repeat(np.arange(len(lengths)), lengths)
        row = int(owner[_first_true(values.is_null().to_numpy(zero_copy_only=False))])
        raise EbnerdFormatError(path, f"row {row + 1}, id {ids[row]}", f"{name} holds a null id")
    values = values.to_numpy(zero_copy_only=False)  # the file's type: int32 ids stay 4 bytes
    return Ragged(offsets, values if dtype is None else values.astype(dtype, copy=False))


def read_behaviors(path: Path, labeled: bool) -> Impressions:
    """behaviors.parquet: `labeled` splits must have article_ids_clicked, within view."""
    wanted = {**S.READ_BEHAVIORS, **(S.READ_LABELS if labeled else {})}
    table = read_table(path, wanted, optional={"is_beyond_accuracy": "bool"})
    ids = _column(path, table, "impression_id").astype(np.int64)
    inview = _ragged(path, table, "article_ids_inview", ids)
    _check_inview_not_empty(path, ids, inview)
    beyond = None
    if "is_beyond_accuracy" in table.column_names:
        beyond = pc.fill_null(table["is_beyond_accuracy"], False).to_numpy(zero_copy_only=False)
    clicked = _ragged(path, table, "article_ids_clicked", ids) if labeled else None
    labels = None
    if clicked is not None:
        labels, in_view = click_labels(inview, clicked)
        _check_clicks_in_view(path, ids, clicked, in_view)
    _check_unique(path, ids, beyond)
    impressions = Impressions(
        impression_id=ids,
        user=_column(path, table, "user_id", ids).astype(np.int64),
        time=_column(path, table, "impression_time", ids).astype(np.int64),
        inview=inview,
        clicked=clicked,
        labels=labels,
        beyond_accuracy=beyond,
    )
    del table
    release_arrow_memory()
    return impressions


def _check_inview_not_empty(path: Path, ids: np.ndarray, inview: Ragged) -> None:
    empty = inview.lengths() == 0
    if not empty.any():
        return
    row = _first_true(empty)
    raise EbnerdFormatError(
        path,
        f"row {row + 1}, impression {ids[row]}",
        "an empty in-view list (article_ids_inview): an impression without candidates",
        "remove that impression or re-download the split",
    )


def pair_keys(owner: np.ndarray, article: np.ndarray) -> np.ndarray:
    """One int64 per (row, article id): row in the high bits, id in the low 32."""
    return (owner.astype(np.int64) << 32) | (article.astype(np.int64) & 0xFFFFFFFF)


def click_labels(inview: Ragged, clicked: Ragged) -> tuple[np.ndarray, np.ndarray]:
    """(int8 per in-view article: 1 where its id is among its impression's clicked ids,
    bool per clicked id: whether it is in view). One sort of the few clicked (impression,
    article) keys, one search of the many in-view ones: np.isin would sort both."""
    rows = np.arange(len(inview.offsets) - 1, dtype=np.int64)
    keys = pair_keys(np.repeat(rows, clicked.lengths()), clicked.values)
    pool, inverse = np.unique(keys, return_inverse=True)  # a click given twice counts once
    shown = pair_keys(np.repeat(rows, inview.lengths()), inview.values)
    if not len(pool):
        return np.zeros(len(shown), dtype=np.int8), np.zeros(0, dtype=bool)
    at = np.minimum(np.searchsorted(pool, shown), len(pool) - 1)
    hit = pool[at] == shown
    found = np.zeros(len(pool), dtype=bool)
    found[at[hit]] = True
    in_view = found[inverse.reshape(-1)]
    return hit.astype(np.int8), in_view


def _check_clicks_in_view(
    path: Path, ids: np.ndarray, clicked: Ragged, in_view: np.ndarray
) -> None:
    if in_view.all():
        return
    k = _first_true(~in_view)
    row = int(np.repeat(np.arange(len(ids)), clicked.lengths())[k])
    raise EbnerdFormatError(
        path,
        f"row {row + 1}, impression {ids[row]}",
        f"clicked article {clicked.values[k]} (article_ids_clicked) is not in its in-view "
        "list (article_ids_inview)",
        "remove that impression or re-download the split",
    )


def _check_unique(path: Path, ids: np.ndarray, beyond: np.ndarray | None) -> None:
    """Impression ids are unique, except the test set's beyond-accuracy rows (all id 0)."""
    repeat = _first_repeat(ids, ids if beyond is None else ids[~beyond])
    if repeat is None:
        return
    twice, first, again = repeat
    raise EbnerdFormatError(
        path,
        f"row {again + 1}",
        f"impression id {twice} again (first on row {first + 1}); impression ids must be unique",
        "remove or renumber the repeated impression, or re-download the split",
    )


def _first_repeat(ids: np.ndarray, checked: np.ndarray) -> tuple[int, int, int] | None:
    """The smallest id that `checked` (some of `ids`) holds twice, with the rows of `ids`
    where it stands first and second; None when every id of `checked` is unique."""
    values, counts = np.unique(checked, return_counts=True)
    if (counts == 1).all():
        return None
    twice = values[_first_true(counts > 1)]
    rows = np.flatnonzero(ids == twice)
    return twice, int(rows[0]), int(rows[1])


def read_history(path: Path) -> tuple[np.ndarray, Ragged]:
    """history.parquet: user ids [U] (unique) and their clicked article ids, oldest first."""
    table = read_table(path, S.READ_HISTORY)
    users = _column(path, table, "user_id").astype(np.int64)
    clicks = _ragged(path, table, "article_id_fixed", users)
    repeat = _first_repeat(users, users)
    if repeat is not None:
        twice, first, again = repeat
        raise EbnerdFormatError(
            path,
            f"row {again + 1}",
            f"user {twice} has a second history row (first on row {first + 1})",
            "keep one row per user, or re-download the split",
        )
    del table
    release_arrow_memory()
    return users, clicks


def iter_document_vectors(
    path: Path, column: str | None, batch_rows: int = 8192
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(article ids [b], vectors float32 [b, dim]) of a document-vector parquet (the toolkit's
    artifacts: article_id and one list-of-floats column, the last one unless `column`), a
    batch of rows at a time (bounded memory: ebnerd_large has 125k x 768 floats)."""
    path = Path(path)
    names = pq.read_schema(path).names if path.is_file() else []
    column = column or (names[-1] if names else "document_vector")
    read_table(path, {"article_id": "integer", column: "float list"}, rows=0)  # checks
    dim, first = None, 0
    reader = pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)  # streamed pages
    for batch in reader.iter_batches(batch_rows, columns=["article_id", column]):
        table = pa.Table.from_batches([batch])
        ids = _column(path, table, "article_id").astype(np.int64)
        vectors = _ragged(path, table, column, ids, dtype=np.float32)
        lengths = vectors.lengths()
        dim = dim if dim is not None else int(lengths[0]) if len(lengths) else 0
        wrong = lengths != dim
        if wrong.any() or dim == 0:
            row = _first_true(wrong) if wrong.any() else 0
            raise EbnerdFormatError(
                path,
                f"row {first + row + 1}, article {ids[row]}, column {column}",
                f"a document vector of {lengths[row]} values where the others have {dim}",
                "give one vector of the same length per article",
            )
        matrix = vectors.values.reshape(len(ids), dim)
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            row = _first_true(bad)
            raise EbnerdFormatError(
                path,
                f"row {first + row + 1}, article {ids[row]}, column {column}",
                "a document vector holding NaN or inf",
                "recompute that vector or drop the article's row",
            )
        yield ids, matrix
        first += len(ids)
        del table, batch, vectors, matrix
        release_arrow_memory()


@dataclass
class Articles:
    """articles.parquet rows, duplicates removed (the first row of an id wins)."""

    ids: np.ndarray  # int64 [N]
    title: list[str]
    subtitle: list[str]
    category: list[str]  # category_str, or the category id as text
    subcategory: list[str]  # the first subcategory id as text ("" when none)
    duplicates: int = 0


def read_articles(paths: tuple[Path, ...] | list[Path]) -> Articles:
    """Every articles.parquet of `paths` (a bundle's, then the test set's), in order."""
    parts, duplicates = [], 0
    for path in paths:
        table = read_table(path, S.READ_ARTICLES, optional=S.OPTIONAL_ARTICLES)
        ids = _column(path, table, "article_id").astype(np.int64)
        duplicates += len(ids) - len(np.unique(ids))  # within a file (the test set repeats
        parts.append((ids, table))  # the bundle's articles: that is no duplicate)
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    articles = Articles(ids[keep], [], [], [], [], duplicates=duplicates)
    for _ids, table in parts:
        texts = _article_texts(table)
        for field, values in texts.items():
            getattr(articles, field).extend(values)
    for field in ("title", "subtitle", "category", "subcategory"):
        values = getattr(articles, field)
        setattr(articles, field, [values[i] for i in keep.tolist()])
    return articles


def _article_texts(table: pa.Table) -> dict[str, list[str]]:
    n = table.num_rows

    def text(name: str) -> list[str]:
        if name not in table.column_names:
            return [""] * n
        return pc.fill_null(pc.cast(table[name], pa.string()), "").to_pylist()

    category = text("category_str") if "category_str" in table.column_names else text("category")
    subcategory = [""] * n
    if "subcategory" in table.column_names:
        column = table["subcategory"].combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        firsts = [
            str(flat[s]) if k else ""
            for s, k in zip(starts.tolist(), lengths.tolist(), strict=True)
        ]
        subcategory = firsts
    return {
        "title": text("title"),
        "subtitle": text("subtitle"),
        "category": category,
        "subcategory": subcategory,
    }
