"""Test helpers: small EB-NeRD folders in the published parquet layout, written by hand.

`write_bundle` writes a bundle (articles.parquet, train/ and validation/ with
behaviors.parquet and history.parquet) from a few Python rows, with the published schema
(newsrec.data.ebnerd.schema), so each test states exactly what the reader gets. Times are
hours after 2023-05-18 00:00 (EB-NeRD's train week starts then).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from newsrec.data.ebnerd import schema as S

START = datetime(2023, 5, 18)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def impression(iid: int, user: int, hour: float, inview: list[int], clicked=None, **extra):
    row = {
        "impression_id": iid,
        "user_id": user,
        "impression_time": START + timedelta(hours=hour),
        "article_ids_inview": inview,
        "article_ids_clicked": clicked if clicked is not None else inview[:1],
        "read_time": 10.0,
        "device_type": 1,
        "is_sso_user": False,
        "is_subscriber": False,
        "session_id": iid,
    }
    return {**row, **extra}


def history(user: int, articles: list[int]) -> dict:
    times = [START - timedelta(hours=len(articles) - k) for k in range(len(articles))]
    return {
        "user_id": user,
        "impression_time_fixed": times,
        "scroll_percentage_fixed": [50.0] * len(articles),
        "article_id_fixed": articles,
        "read_time_fixed": [20.0] * len(articles),
    }


def article(aid: int, title: str, category: str = "nyheder", sub: int = 7) -> dict:
    return {
        "article_id": aid,
        "title": title,
        "subtitle": f"underrubrik {title}",
        "premium": False,
        "body": "",
        "published_time": START - timedelta(days=1),
        "last_modified_time": START - timedelta(days=1),
        "image_ids": [],
        "article_type": "article_default",
        "url": f"https://ekstrabladet.dk/{aid}",
        "ner_clusters": [],
        "entity_groups": [],
        "topics": [],
        "category": 100,
        "subcategory": [sub],
        "category_str": category,
        "sentiment_score": 0.5,
        "sentiment_label": "Neutral",
    }


def default_articles() -> list[dict]:
    words = ["kampen", "regeringen", "vejret", "politiet", "koncerten", "valget", "banken"]
    return [
        article(9000 + k, f"nyt om {w} i dag", ["sport", "nyheder"][k % 2])
        for k, w in enumerate(words)
    ]


def write_bundle(
    folder: Path,
    train: list[dict],
    validation: list[dict],
    histories: list[dict],
    articles: list[dict] | None = None,
) -> Path:
    """folder/{articles.parquet, train/, validation/}; the same history file for both."""
    for split, rows in (("train", train), ("validation", validation)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        S.write_parquet(_table(rows, S.BEHAVIORS), folder / split / "behaviors.parquet")
        S.write_parquet(_table(histories, S.HISTORY), folder / split / "history.parquet")
    S.write_parquet(_table(articles or default_articles(), S.ARTICLES), folder / "articles.parquet")
    return folder


def simple_bundle(folder: Path) -> Path:
    """Two users, a few impressions a split: enough for every reader path."""
    train = [
        impression(1, 11, 1, [9000, 9001, 9002], [9001]),
        impression(2, 12, 30, [9003, 9004], [9003, 9004]),
        impression(3, 11, 50, [9005, 9000, 9006], [9006]),
    ]
    validation = [
        impression(4, 11, 170, [9001, 9002, 9003], [9002]),
        impression(5, 13, 175, [9004, 9005], [9005]),
    ]
    histories = [history(11, [9003, 9004, 9005]), history(12, [9000])]
    return write_bundle(folder, train, validation, histories)


def write_vectors(path: Path, ids: list[int], vectors: list, column: str = "document_vector"):
    """A document-vector artifact: article_id and one list-of-floats column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("article_id", pa.int32()), (column, pa.large_list(pa.float32()))])
    values = [None if v is None else [float(x) for x in v] for v in vectors]
    S.write_parquet(pa.table({"article_id": ids, column: values}, schema=schema), path)
    return path


def replace_column(path: Path, name: str, values: pa.Array | None) -> None:
    """Rewrite a parquet file with column `name` replaced (or dropped when None)."""
    table = pq.read_table(path)
    index = table.schema.get_field_index(name)
    table = table.remove_column(index) if values is None else table.set_column(index, name, values)
    S.write_parquet(table, path)


def set_row(path: Path, name: str, row: int, value) -> None:
    """Rewrite one row of a list column (same type)."""
    table = pq.read_table(path)
    column = table[name].to_pylist()
    column[row] = value
    replace_column(path, name, pa.array(column, table.schema.field(name).type))
