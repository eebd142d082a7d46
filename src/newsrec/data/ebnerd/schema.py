"""EB-NeRD's files as published: names, Arrow types, and the error that names file and column.

Read from the toolkit (github ebanalyse/ebnerd-benchmark): the column names of
`src/ebrec/utils/_constants.py`; the types of the real `test/data/ebnerd/behaviors.parquet`
and `history.parquet` it ships (read with pyarrow); the 21 article columns and their types as
its notebooks print them (`examples/datasets/*.ipynb`, `make_embedding_artifacts.ipynb`);
the test set's behaviors as documented for `ebnerd_testset` (no `article_ids_clicked`,
`article_id`, `next_read_time`, `next_scroll_percentage`; `is_beyond_accuracy` added).
The synthetic writer (`newsrec.data.ebnerd.synthetic`) writes exactly these schemas.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from newsrec.data.mind import DataError

TIMESTAMP = pa.timestamp("us")  # naive microseconds, as the published files


class EbnerdFormatError(DataError):
    """An EB-NeRD file that cannot be read as EB-NeRD; names file, column or row, and remedy."""

    def __init__(self, path: Path | str, where: str, problem: str, remedy: str = ""):
        remedy = remedy or "fix or re-download the file"
        super().__init__(f"{path} ({where}): {problem}. To fix: {remedy}.")
        self.path = Path(path)


# behaviors.parquet of train/ and validation/, in the published column order
BEHAVIORS = pa.schema(
    [
        ("impression_id", pa.uint32()),
        ("article_id", pa.int32()),  # the article page the impression was on (null: front page)
        ("impression_time", TIMESTAMP),
        ("read_time", pa.float32()),
        ("scroll_percentage", pa.float32()),
        ("device_type", pa.int8()),
        ("article_ids_inview", pa.large_list(pa.int32())),
        ("article_ids_clicked", pa.large_list(pa.int32())),
        ("user_id", pa.uint32()),
        ("is_sso_user", pa.bool_()),
        ("gender", pa.int8()),
        ("postcode", pa.int8()),
        ("age", pa.int8()),
        ("is_subscriber", pa.bool_()),
        ("session_id", pa.uint32()),
        ("next_read_time", pa.float32()),
        ("next_scroll_percentage", pa.float32()),
    ]
)
_TEST_DROPPED = {"article_id", "article_ids_clicked", "next_read_time", "next_scroll_percentage"}
# ebnerd_testset/test/behaviors.parquet: the outcomes withheld, the beyond-accuracy flag added
TEST_BEHAVIORS = pa.schema(
    [f for f in BEHAVIORS if f.name not in _TEST_DROPPED] + [("is_beyond_accuracy", pa.bool_())]
)
# history.parquet: one row per user, the 21 days before the split, oldest first
HISTORY = pa.schema(
    [
        ("user_id", pa.uint32()),
        ("impression_time_fixed", pa.large_list(TIMESTAMP)),
        ("scroll_percentage_fixed", pa.large_list(pa.float32())),
        ("article_id_fixed", pa.large_list(pa.int32())),
        ("read_time_fixed", pa.large_list(pa.float32())),
    ]
)
ARTICLES = pa.schema(
    [
        ("article_id", pa.int32()),
        ("title", pa.string()),
        ("subtitle", pa.string()),
        ("last_modified_time", TIMESTAMP),
        ("premium", pa.bool_()),
        ("body", pa.string()),
        ("published_time", TIMESTAMP),
        ("image_ids", pa.large_list(pa.int64())),
        ("article_type", pa.string()),
        ("url", pa.string()),
        ("ner_clusters", pa.large_list(pa.string())),
        ("entity_groups", pa.large_list(pa.string())),
        ("topics", pa.large_list(pa.string())),
        ("category", pa.int16()),
        ("subcategory", pa.large_list(pa.int16())),
        ("category_str", pa.string()),
        ("total_inviews", pa.int32()),
        ("total_pageviews", pa.int32()),
        ("total_read_time", pa.float32()),
        ("sentiment_score", pa.float32()),
        ("sentiment_label", pa.string()),
    ]
)
# The synthetic world's truth beside the files (not part of EB-NeRD): the click probability
# of every in-view article, in the order of the split's behaviors.parquet.
CLICK_PROBABILITY = pa.schema(
    [("impression_id", pa.uint32()), ("click_probability", pa.large_list(pa.float32()))]
)

# What newsrec reads of each file, and the kind of type each must have. Kinds, not exact
# types: a re-saved file with int64 ids or list (not large_list) columns reads the same.
READ_BEHAVIORS = {
    "impression_id": "integer",
    "impression_time": "timestamp",
    "article_ids_inview": "integer list",
    "user_id": "integer",
}
READ_LABELS = {"article_ids_clicked": "integer list"}
READ_HISTORY = {"user_id": "integer", "article_id_fixed": "integer list"}
READ_ARTICLES = {"article_id": "integer", "title": "string"}
OPTIONAL_ARTICLES = {
    "subtitle": "string",
    "category": "integer",
    "subcategory": "integer list",
    "category_str": "string",
}


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write as the published files are written (polars): list children named `item`."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, use_compliant_nested_type=False)


def type_kind(dtype: pa.DataType) -> str:
    """'integer', 'float', 'string', 'timestamp', '<kind> list', or the type's own name."""
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    ):
        return f"{type_kind(dtype.value_type)} list"
    return str(dtype)


def check_columns(path: Path, schema: pa.Schema, wanted: dict[str, str]) -> None:
    """Raise EbnerdFormatError naming the first column of `wanted` that `schema` lacks or
    holds with another kind of type."""
    for name, kind in wanted.items():
        index = schema.get_field_index(name)
        if index < 0:
            raise EbnerdFormatError(
                path,
                f"column {name}",
                f"the column {name} is missing (columns: {', '.join(schema.names)})",
                "give the file as published (the EB-NeRD toolkit's column names)",
            )
        found = type_kind(schema.field(index).type)
        if found != kind:
            raise EbnerdFormatError(
                path,
                f"column {name}",
                f"{name} holds {schema.field(index).type} ({found}) where EB-NeRD has {kind}",
                "give the file as published, with the toolkit's column types",
            )
