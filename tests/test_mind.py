"""The MIND reader on hand-written rows: what it reads, and the errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from newsrec.data.mind import (
    MindFormatError,
    Report,
    read_behaviors,
    read_entity_embeddings,
    read_news,
    tokenize,
)

ENTITY = {
    "Label": "Chicago",
    "Type": "G",
    "WikidataId": "Q1297",
    "Confidence": 1.0,
    "OccurrenceOffsets": [10],
    "SurfaceForms": ["Chicago"],
}
NEWS = [
    [
        "N1",
        "sports",
        "football",
        "Rain hits Chicago game",
        "An abstract.",
        "http://x",
        json.dumps([ENTITY]),
        "[]",
    ],
    ["N2", "news", "politics", "Vote, today!", "", "http://y", "[]", "[]"],
    ["N3", "news", "politics", "", "Abstract only", "http://z", "", ""],
]
BEHAVIORS = [
    "1\tU1\t11/15/2019 10:22:32 AM\tN1 N2\tN3-1 N2-0",
    "2\tU2\t11/15/2019 1:02:03 PM\t\tN1-0 N3-1 N2-0",
]


def write(path: Path, lines: list[str] | bytes) -> Path:
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    return path


def news_lines(rows=NEWS) -> list[str]:
    return ["\t".join(r) for r in rows]


def test_reads_news_rows_and_title_entity_spans(tmp_path):
    report = Report()
    news = read_news(write(tmp_path / "news.tsv", news_lines()), report)
    assert news.ids == ["N1", "N2", "N3"]
    assert news.category == ["sports", "news", "news"]
    assert news.title[1] == "Vote, today!"
    # The entity's span points at its surface form in the title.
    ((entity, start, end),) = news.title_entities[0]
    assert entity == "Q1297" and news.title[0][start:end] == "Chicago"
    assert news.title_entities[2] == []  # empty entity column is no entity
    assert report.counts["news with an empty title"] == 1


def test_duplicate_news_keep_the_first_row_and_are_counted(tmp_path):
    rows = NEWS + [["N1", "other", "other", "Another title", "", "", "[]", "[]"]]
    report = Report()
    news = read_news(write(tmp_path / "news.tsv", news_lines(rows)), report)
    assert news.ids == ["N1", "N2", "N3"]
    assert news.category[0] == "sports"
    assert report.counts["duplicate news rows (first kept)"] == 1


def test_reads_labeled_behaviors(tmp_path):
    b = read_behaviors(write(tmp_path / "behaviors.tsv", BEHAVIORS))
    assert b.impression_id.tolist() == [1, 2]
    assert b.user.to_pylist() == ["U1", "U2"]
    assert b.history.to_pylist() == [["N1", "N2"], []]
    assert b.candidates.to_pylist() == [["N3", "N2"], ["N1", "N3", "N2"]]
    assert b.labels.tolist() == [1, 0, 0, 1, 0]
    # 1:02:03 PM is 13:02:03: 2 h 39 min 31 s after 10:22:32 AM.
    assert int(b.time[1] - b.time[0]) == 2 * 3600 + 39 * 60 + 31


def test_reads_unlabeled_behaviors(tmp_path):
    b = read_behaviors(write(tmp_path / "b.tsv", ["7\tU9\t11/16/2019 9:00:00 AM\tN1\tN2 N3"]))
    assert b.labels is None
    assert b.candidates.to_pylist() == [["N2", "N3"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3\tU3\t11/15/2019 1:02:03 PM\tN1", "expected 5 tab-separated columns, found 4"),
        ("3\tU3\t11/15/2019 1:02:03 PM\tN1\tN2-2", "label that is not 0 or 1"),
        ("3\tU3\t11/15/2019 1:02:03 PM\tN1\tN2-yes", "label that is not 0 or 1"),
        ("3\tU3\t2019-11-15 13:02\tN1\tN2-1", "time '2019-11-15 13:02'"),
        ("x3\tU3\t11/15/2019 1:02:03 PM\tN1\tN2-1", "is not an integer"),
        ("3\tU3\t11/15/2019 1:02:03 PM\tN1\tN2-1 N4", "labeled and unlabeled"),
        ("3\tU3\t11/15/2019 1:02:03 PM\tN1\t", "without candidates"),
    ],
)
def test_bad_behaviors_line_is_named(tmp_path, line, message):
    path = write(tmp_path / "behaviors.tsv", BEHAVIORS + [line])
    with pytest.raises(MindFormatError) as err:
        read_behaviors(path)
    assert f"{path}:3:" in str(err.value)
    assert message in str(err.value)
    assert "To fix" in str(err.value)


def test_undecodable_bytes_name_the_line(tmp_path):
    raw = ("\n".join(BEHAVIORS) + "\n").encode() + b"3\tU3\t11/15/2019 1:02:03 PM\t\tN\xff1-1\n"
    path = write(tmp_path / "behaviors.tsv", raw)
    with pytest.raises(MindFormatError, match=r"behaviors.tsv:3: bytes that are not UTF-8"):
        read_behaviors(path)
    news = write(
        tmp_path / "news.tsv",
        ("\n".join(news_lines())).encode() + b"\nN9\ta\tb\t\xc3(\t\t\t[]\t[]\n",
    )
    with pytest.raises(MindFormatError, match=r"news.tsv:4: bytes that are not UTF-8"):
        read_news(news)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["N9", "a", "b", "title"], "expected 8 tab-separated columns, found 4"),
        (
            ["N9", "a", "b", "t", "", "", "[{'Label': 1}]", "[]"],
            "title entities (column 7) is not valid JSON",
        ),
        (
            ["N9", "a", "b", "t", "", "", "[]", '{"a": 1}'],
            "abstract entities (column 8) is not a JSON list",
        ),
        (["N9", "a", "b", "t", "", "", '[{"Label": "x"}]', "[]"], "has no WikidataId"),
    ],
)
def test_bad_news_line_is_named(tmp_path, row, message):
    path = write(tmp_path / "news.tsv", news_lines(NEWS + [row]))
    with pytest.raises(MindFormatError) as err:
        read_news(path)
    assert f"{path}:4:" in str(err.value)
    assert message in str(err.value)


def test_entity_embeddings(tmp_path):
    path = write(tmp_path / "e.vec", ["Q1\t0.5\t-1.0\t2\t", "Q2\t1\t2\t3"])
    ids, vectors = read_entity_embeddings(path)
    assert ids == ["Q1", "Q2"]
    np.testing.assert_array_equal(vectors, [[0.5, -1.0, 2.0], [1, 2, 3]])
    bad = write(tmp_path / "bad.vec", ["Q1\t0.5\t1", "Q2\t1\tabc"])
    with pytest.raises(MindFormatError, match=r"bad.vec:2: a value that is not a number"):
        read_entity_embeddings(bad)
    ragged = write(tmp_path / "ragged.vec", ["Q1\t0.5\t1", "Q2\t1"])
    with pytest.raises(MindFormatError, match=r"ragged.vec:2: 1 values where earlier rows have 2"):
        read_entity_embeddings(ragged)


def test_tokenizer_lowercases_and_keeps_punctuation():
    assert tokenize("Rockets Ends 2018 with a Win!") == [
        "rockets",
        "ends",
        "2018",
        "with",
        "a",
        "win",
        "!",
    ]
    assert tokenize("U.S. vote; 'yes'") == ["u", ".", "s", ".", "vote", ";", "yes"]
