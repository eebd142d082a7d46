"""EB-NeRD and xMIND through the mirror mechanism MIND uses, against a loopback server only."""

from __future__ import annotations

import pytest

from newsrec.data.arrays import PreprocessConfig
from newsrec.data.ebnerd import EbnerdSource
from newsrec.data.ebnerd.synthetic import SyntheticEbnerdSource
from newsrec.data.preprocess import load_or_build
from newsrec.data.xmind import XMindSource
from newsrec.data.xmind_synthetic import write_translations

from fixtures_mind import (  # noqa: F401  (no_internet is a fixture)
    make_mind_zip,
    no_internet,
    serve_folder,
    write_mind_split,
)

pytestmark = pytest.mark.usefixtures("no_internet")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A web root laid out as EB-NeRD's bucket: ebnerd_demo.zip (a top folder inside, as a
    bundle zipped with its folder), ebnerd_testset.zip, artifacts/<name>.zip."""
    root = tmp_path_factory.mktemp("ebnerd")
    source = SyntheticEbnerdSource("synthetic_ebnerd_tiny")
    source.prepare(root, progress=False)
    world = source.path(root)
    web = root / "web"
    make_mind_zip(world / "ebnerd_synthetic", web / "ebnerd_demo.zip", top_folder="ebnerd_demo")
    make_mind_zip(world / "ebnerd_testset", web / "ebnerd_testset.zip")
    vectors = world / "artifacts" / "synthetic_document_vector"
    make_mind_zip(vectors, web / "artifacts" / "Some_vectors.zip", top_folder="Some_vectors")
    return web


def test_ebnerd_downloads_from_the_mirrors_and_preprocesses(web, tmp_path):
    with serve_folder(web) as server:
        source = EbnerdSource(
            "demo",
            mirrors=[f"{server.url}/missing/{{name}}", f"{server.url}/{{name}}"],
            testset=True,
            document_vectors="Some_vectors",
        )
        paths = source.prepare(tmp_path, progress=False)
        asked = [path for _, path, _ in server.requests]
    assert "/ebnerd_demo.zip" in asked and "/artifacts/Some_vectors.zip" in asked
    assert "/missing/ebnerd_demo.zip" in asked  # the first mirror was tried first
    assert paths.train == tmp_path / "ebnerd" / "ebnerd_demo" / "train"
    assert paths.test == tmp_path / "ebnerd" / "ebnerd_testset" / "test"
    assert paths.document_vectors.name == "document_vector.parquet"
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    assert "document_vector" in data.features and not data.splits["test"].labeled
    # a second prepare reuses the unzipped folders: no request, no server needed
    assert (
        EbnerdSource("demo", mirrors=["http://127.0.0.1:9/{name}"])
        .prepare(tmp_path, progress=False)
        .train
        == paths.train
    )


def test_xmind_downloads_translations_and_joins(tmp_path):
    mind = tmp_path / "mind"
    splits = {
        s: write_mind_split(mind / f"MINDsmall_{s}", seed=k) for k, s in enumerate(("train", "dev"))
    }
    files = tmp_path / "files"
    write_translations(splits, files, "ron", seed=0)
    web = tmp_path / "web"
    for split in splits:
        folder = files / "ron" / f"xMINDsmall_{split}"
        make_mind_zip(
            folder, web / "xMIND" / "ron" / f"xMINDsmall_{split}.zip", top_folder=folder.name
        )
    with serve_folder(web) as server:
        source = XMindSource(
            "ron", mind_dir=mind, xmind_mirrors=[f"{server.url}/xMIND/{{language}}/{{name}}"]
        )
        paths = source.prepare(tmp_path / "root", progress=False)
    news = (paths.train / "news.tsv").read_text(encoding="utf-8").splitlines()
    original = (mind / "MINDsmall_train" / "news.tsv").read_text(encoding="utf-8").splitlines()
    assert len(news) == len(original)
    assert [n.split("\t")[:3] for n in news] == [o.split("\t")[:3] for o in original]
    assert news[0].split("\t")[3] != original[0].split("\t")[3]  # the title is translated
