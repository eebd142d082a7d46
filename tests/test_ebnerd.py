"""EB-NeRD: the published schema, the challenge protocol in the arrays, bad input.

The schema expectations below are the Arrow types of the toolkit's own sample files
(ebanalyse/ebnerd-benchmark, test/data/ebnerd/behaviors.parquet and history.parquet, read
with pyarrow), written out here as literals: the synthetic writer must produce them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_ebnerd import replace_column, set_row, simple_bundle, write_vectors

from newsrec.cli import run_cli
from newsrec.data.arrays import PreprocessConfig
from newsrec.data.ebnerd import EbnerdFormatError, EbnerdSource
from newsrec.data.ebnerd.source import bundle_paths
from newsrec.data.ebnerd.synthetic import SyntheticEbnerdSource
from newsrec.data.mind import DataError
from newsrec.data.preprocess import load_or_build
from newsrec.train import train

from conftest import make_config

# The toolkit's test/data/ebnerd/behaviors.parquet and history.parquet, as pyarrow reads them.
TOOLKIT_BEHAVIORS = [
    ("impression_id", "uint32"),
    ("article_id", "int32"),
    ("impression_time", "timestamp[us]"),
    ("read_time", "float"),
    ("scroll_percentage", "float"),
    ("device_type", "int8"),
    ("article_ids_inview", "large_list<item: int32>"),
    ("article_ids_clicked", "large_list<item: int32>"),
    ("user_id", "uint32"),
    ("is_sso_user", "bool"),
    ("gender", "int8"),
    ("postcode", "int8"),
    ("age", "int8"),
    ("is_subscriber", "bool"),
    ("session_id", "uint32"),
    ("next_read_time", "float"),
    ("next_scroll_percentage", "float"),
]
TOOLKIT_HISTORY = [
    ("user_id", "uint32"),
    ("impression_time_fixed", "large_list<item: timestamp[us]>"),
    ("scroll_percentage_fixed", "large_list<item: float>"),
    ("article_id_fixed", "large_list<item: int32>"),
    ("read_time_fixed", "large_list<item: float>"),
]


def _columns(path) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in pq.read_schema(path)]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ebnerd")
    source = SyntheticEbnerdSource("synthetic_ebnerd_tiny")
    return source.prepare(root, progress=False), source.path(root)


def test_synthetic_files_have_the_toolkits_schema(tiny_world):
    paths, folder = tiny_world
    for split in (paths.train, paths.dev):
        assert _columns(split / "behaviors.parquet") == TOOLKIT_BEHAVIORS
        assert _columns(split / "history.parquet") == TOOLKIT_HISTORY
    test = dict(_columns(paths.test / "behaviors.parquet"))
    # the test set withholds the outcomes and flags the beyond-accuracy impressions
    assert "article_ids_clicked" not in test and test["is_beyond_accuracy"] == "bool"
    assert test["article_ids_inview"] == "large_list<item: int32>"
    articles = dict(_columns(paths.articles[0]))
    assert len(articles) == 21  # the published articles.parquet's columns
    assert articles["article_id"] == "int32" and articles["published_time"] == "timestamp[us]"
    beyond = pq.read_table(paths.test / "behaviors.parquet")
    flagged = beyond.filter(beyond["is_beyond_accuracy"])
    assert len(flagged) == 20 and set(flagged["impression_id"].to_pylist()) == {0}


def test_synthetic_world_preprocesses_with_document_vectors_and_oracle(tiny_world, tmp_path):
    paths, _ = tiny_world
    data = load_or_build(paths, PreprocessConfig(history_len=20), tmp_path, progress=False)
    assert data.features == ("title", "abstract", "category", "subcategory", "document_vector")
    assert data.news["document_vector"].shape == (501, 16)
    assert not data.news["document_vector"][0].any()  # row 0, the padding news
    assert data.info().document_dim == 16
    test = data.splits["test"]
    assert not test.labeled and test.truth is not None
    assert len(np.unique(test.impression_id)) == len(test)  # beyond-accuracy ids made unique
    train = data.splits["train"]
    assert train.labeled and (train.history_offsets[1:] - train.history_offsets[:-1]).max() <= 20


def test_protocol_candidates_labels_histories_and_the_counts(tmp_path):
    paths = bundle_paths(simple_bundle(tmp_path / "b"), None, None, None)
    data = load_or_build(paths, PreprocessConfig(history_len=2), tmp_path / "cache", progress=False)
    train, dev = data.splits["train"], data.splits["dev"]
    # articles 9000..9006 are rows 1..7; candidates in file order, labels from the clicks
    assert train.candidates.tolist() == [1, 2, 3, 4, 5, 6, 1, 7]
    assert train.labels.tolist() == [0, 1, 0, 1, 1, 0, 0, 1]
    # user 11's history [9003, 9004, 9005] cut to its last 2; user 12's [9000]
    assert train.history.tolist() == [5, 6, 1, 5, 6]
    assert np.diff(train.history_offsets).tolist() == [2, 1, 2]
    assert dev.candidates.tolist() == [2, 3, 4, 5, 6] and dev.labels.tolist() == [0, 1, 0, 0, 1]
    assert np.diff(dev.history_offsets).tolist() == [2, 0]  # user 13 has no history row
    assert data.vocab.users == ["<unseen>", "11", "12"] and dev.user.tolist() == [1, 0]
    assert data.report["impressions with several clicks (a training sample each)"] == 1
    assert data.report["impressions of users without a history row (empty history)"] == 1
    assert "title_entities" not in data.features


def test_missing_articles_are_scored_as_the_empty_news_and_counted(tmp_path):
    folder = simple_bundle(tmp_path / "b")
    set_row(folder / "train" / "behaviors.parquet", "article_ids_inview", 0, [9000, 9999, 9001])
    paths = bundle_paths(folder, None, None, None)
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    assert data.splits["train"].candidates[:3].tolist() == [1, 0, 2]
    assert data.report["in-view articles missing from articles.parquet (scored as empty news)"] == 1


def _bad_bundle(tmp_path, case: str):
    folder = simple_bundle(tmp_path / "b")
    behaviors = folder / "train" / "behaviors.parquet"
    vectors = None
    if case == "missing file":
        (folder / "validation" / "history.parquet").unlink()
    elif case == "missing column":
        replace_column(behaviors, "article_ids_inview", None)
    elif case == "wrong type":
        replace_column(behaviors, "impression_time", pa.array(["2023-05-18"] * 3))
    elif case == "click not in view":
        set_row(behaviors, "article_ids_clicked", 1, [9999])
    elif case == "empty in-view":
        set_row(behaviors, "article_ids_inview", 0, [])
    elif case in ("nan vector", "short vector"):
        rows = [[0.1, 0.2, 0.3]] * 7
        rows[1] = [0.1, float("nan"), 0.3] if case == "nan vector" else [0.1, 0.2]
        vectors = write_vectors(tmp_path / "vec.parquet", list(range(9000, 9007)), rows)
    return folder, vectors


BAD = {
    "missing file": ["validation/history.parquet", "lacks"],
    "missing column": ["train/behaviors.parquet", "column article_ids_inview", "missing"],
    "wrong type": ["train/behaviors.parquet", "column impression_time", "timestamp"],
    "click not in view": ["row 2, impression 2", "clicked article 9999", "not in its in-view"],
    "empty in-view": ["row 1, impression 1", "empty in-view list"],
    "nan vector": ["vec.parquet", "row 2, article 9001", "NaN"],
    "short vector": ["vec.parquet", "row 2, article 9001", "2 values where the others have 3"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_place_and_caches_nothing(tmp_path, case):
    folder, vectors = _bad_bundle(tmp_path, case)
    with pytest.raises(DataError) as err:  # the source checks files, the reader the rest
        paths = bundle_paths(folder, None, vectors, None)
        load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    for part in BAD[case]:
        assert part in str(err.value)
    assert "To fix:" in str(err.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_parquet_named_by_the_reader(tmp_path):
    from newsrec.data.ebnerd.reader import read_history

    with pytest.raises(EbnerdFormatError, match=r"history\.parquet \(file\): the file is missing"):
        read_history(tmp_path / "validation" / "history.parquet")


def test_train_py_prints_the_error_without_traceback(tmp_path, capsys):
    folder, _ = _bad_bundle(tmp_path, "click not in view")
    cfg = make_config(
        "train",
        ["data=ebnerd_demo", f"data.source.data_dir={folder}", "trainer=cpu", "logger=[]"],
        tmp_path / "data",
        tmp_path / "out",
    )
    with pytest.raises(SystemExit) as stop:
        run_cli(train, cfg)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "clicked article 9999" in err and "Traceback" not in err


def test_data_dir_may_be_the_parent_or_the_bundle_and_the_test_set_is_required(tmp_path):
    simple_bundle(tmp_path / "ebnerd_demo")
    parent = EbnerdSource("demo", data_dir=tmp_path).prepare(tmp_path / "root")
    itself = EbnerdSource("demo", data_dir=tmp_path / "ebnerd_demo").prepare(tmp_path / "root")
    assert parent.train == itself.train == tmp_path / "ebnerd_demo" / "train"
    assert parent.dev == tmp_path / "ebnerd_demo" / "validation" and parent.test is None
    with pytest.raises(DataError, match="ebnerd_testset"):
        EbnerdSource("demo", data_dir=tmp_path, testset=True).prepare(tmp_path / "root")


def test_in_view_list_with_a_null_id_is_refused(tmp_path):
    folder = simple_bundle(tmp_path / "b")
    set_row(folder / "train" / "behaviors.parquet", "article_ids_inview", 2, [9005, None])
    paths = bundle_paths(folder, None, None, None)
    with pytest.raises(EbnerdFormatError, match="row 3, id 3.*null"):
        load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)


def test_impressions_keep_file_order_and_times(tmp_path):
    folder = simple_bundle(tmp_path / "b")
    paths = bundle_paths(folder, None, None, None)
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    train = data.splits["train"]
    assert train.impression_id.tolist() == [1, 2, 3]
    assert (train.time - train.time[0]).tolist() == [0, 29 * 3600, 49 * 3600]


def test_a_click_given_twice_counts_once(tmp_path):
    # ebnerd_small's validation repeats 667 clicked ids within their impressions
    folder = simple_bundle(tmp_path / "b")
    set_row(folder / "train" / "behaviors.parquet", "article_ids_clicked", 0, [9001, 9001])
    paths = bundle_paths(folder, None, None, None)
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    assert data.splits["train"].labels[:3].tolist() == [0, 1, 0]


def test_glove_on_danish_text_is_refused_with_the_alternatives(tmp_path):
    from newsrec.data.glove import words_outside

    folder = simple_bundle(tmp_path / "b")
    with pytest.raises(DataError, match="embedding=random.*nrms_docvec.*nrms_plm"):
        words_outside([folder / "train"], ["title"], ["<pad>"])
