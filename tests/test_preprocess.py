"""Preprocessing: sizes from the data, histories and candidates, the cache and its atomicity."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from newsrec.data import preprocess
from newsrec.data.info import SplitPaths
from newsrec.data.mind import read_behaviors, read_news, tokenize
from newsrec.data.preprocess import PreprocessConfig, build, cache_key, load_or_build


def test_vocabulary_and_table_sizes_come_from_the_data(tiny_paths, tiny_data):
    news = read_news(tiny_paths.train / "news.tsv")
    words = Counter(w for title in news.title for w in tokenize(title))
    assert tiny_data.vocab.words[:2] == ["<pad>", "<unk>"]
    assert set(tiny_data.vocab.words[2:]) == set(words)
    assert len(tiny_data.vocab.categories) == len(set(news.category)) + 1
    all_ids = set(news.ids)
    for split in ("dev", "test"):
        all_ids |= set(read_news(getattr(tiny_paths, split) / "news.tsv").ids)
    info = tiny_data.info()
    assert info.num_news == len(all_ids) + 1  # + the padding row
    assert info.vocab_size == len(words) + 2


def test_min_word_count_maps_rare_words_to_unknown(tiny_paths, tmp_path):
    data = build(tiny_paths, PreprocessConfig(min_word_count=3))
    news = read_news(tiny_paths.train / "news.tsv")
    counts = Counter(w for title in news.title for w in tokenize(title))
    assert set(data.vocab.words[2:]) == {w for w, c in counts.items() if c >= 3}
    row = 1 + news.ids.index(news.ids[0])
    expected = [data.vocab.words.index(w) if counts[w] >= 3 else 1 for w in tokenize(news.title[0])]
    assert data.news["title"][row, : len(expected)].tolist() == expected[:30]


def test_histories_keep_the_most_recent_clicks(tiny_paths, tiny_data):
    raw = read_behaviors(tiny_paths.train / "behaviors.tsv")
    split = tiny_data.splits["train"]
    news_row = {}
    for folder in (tiny_paths.train, tiny_paths.dev, tiny_paths.test):
        for news_id in read_news(folder / "news.tsv").ids:
            news_row.setdefault(news_id, len(news_row) + 1)
    histories = raw.history.to_pylist()
    lengths = np.diff(split.history_offsets)
    assert lengths.max() <= 50
    assert max(len(h) for h in histories) > 50  # the world does have long histories
    for i in range(0, len(split), 7):
        expected = [news_row[n] for n in histories[i]][-50:]
        got = split.history[split.history_offsets[i] : split.history_offsets[i + 1]]
        assert got.tolist() == expected
        candidates = split.candidates[split.candidate_offsets[i] : split.candidate_offsets[i + 1]]
        assert candidates.tolist() == [news_row[n] for n in raw.candidates[i].as_py()]


def test_identical_histories_share_an_id(tiny_data):
    split = tiny_data.splits["dev"]
    seqs = [
        tuple(split.history[split.history_offsets[i] : split.history_offsets[i + 1]])
        for i in range(len(split))
    ]
    by_id: dict[int, set] = {}
    for i, seq in enumerate(seqs):
        by_id.setdefault(int(split.history_id[i]), set()).add(seq)
    assert all(len(s) == 1 for s in by_id.values())
    assert len(by_id) == len(set(seqs))


def test_users_known_only_from_the_fitted_part_of_train(tiny_paths, tiny_data):
    raw = read_behaviors(tiny_paths.train / "behaviors.tsv")
    fit = raw.time < tiny_data.val_start
    fit_users = set(np.asarray(raw.user.to_pylist())[fit])
    assert set(tiny_data.vocab.users[1:]) == fit_users
    dev = read_behaviors(tiny_paths.dev / "behaviors.tsv")
    dev_users = dev.user.to_pylist()
    index = {u: i for i, u in enumerate(tiny_data.vocab.users)}
    expected = [index.get(u, 0) for u in dev_users]
    assert tiny_data.splits["dev"].user.tolist() == expected
    assert 0 in expected  # dev has users unseen in training, as MIND does


def _write_split(folder: Path, behaviors: list[str]) -> None:
    folder.mkdir(parents=True)
    news = [f"N{i}\tnews\tpolitics\tTitle number {i}\t\t\t[]\t[]" for i in range(1, 5)]
    (folder / "news.tsv").write_text("\n".join(news) + "\n")
    (folder / "behaviors.tsv").write_text("\n".join(behaviors) + "\n")


def test_missing_news_and_empty_histories_are_counted(tmp_path):
    _write_split(
        tmp_path / "train",
        [
            "1\tU1\t11/09/2019 9:00:00 AM\tN1 N99 N2\tN3-1 N4-0",
            "2\tU2\t11/10/2019 9:00:00 AM\t\tN3-0 N77-1",
        ],
    )
    _write_split(tmp_path / "dev", ["1\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N3-0"])
    # 2 of train's 7 entries are missing: far above the error threshold, allowed here.
    cfg = PreprocessConfig(max_missing_news=1.0)
    data = build(SplitPaths(tmp_path / "train", tmp_path / "dev"), cfg)
    train = data.splits["train"]
    assert train.history.tolist() == [1, 2]  # N99 dropped
    assert train.candidates.tolist() == [3, 4, 3, 0]  # N77 scored as the empty news row 0
    assert data.report["history news missing from news.tsv (dropped)"] == 1
    assert data.report["candidate news missing from news.tsv (scored as empty news)"] == 1
    assert data.report["impressions with an empty history"] == 1


def test_cache_is_reused(tiny_paths, tmp_path, monkeypatch):
    cfg = PreprocessConfig()
    first = load_or_build(tiny_paths, cfg, tmp_path)
    calls = []
    monkeypatch.setattr(preprocess, "build", lambda *a, **k: calls.append(1))
    second = load_or_build(tiny_paths, cfg, tmp_path)
    assert calls == []
    assert second.path == first.path
    np.testing.assert_array_equal(second.news["title"], first.news["title"])
    np.testing.assert_array_equal(second.splits["dev"].labels, first.splits["dev"].labels)
    # Another setting is another cache entry.
    assert cache_key(tiny_paths, PreprocessConfig(history_len=10), None) != cache_key(
        tiny_paths, cfg, None
    )


def test_a_checkpoints_vocabulary_reuses_trainings_cache(tiny_paths, tmp_path, monkeypatch):
    # eval.py preprocesses with the checkpoint's vocabulary; when that is the one training
    # built, training's cache serves it instead of a second pass over the data.
    cfg = PreprocessConfig()
    trained = load_or_build(tiny_paths, cfg, tmp_path)
    calls = []
    real_build = preprocess.build
    monkeypatch.setattr(preprocess, "build", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    same = load_or_build(tiny_paths, cfg, tmp_path, vocab=trained.vocab)
    assert calls == [] and same.path == trained.path
    # Another vocabulary (one word more) is another cache, built with it.
    other = dataclasses.replace(trained.vocab, words=[*trained.vocab.words, "zebra"])
    extended = load_or_build(tiny_paths, cfg, tmp_path, vocab=other)
    assert calls == [1] and extended.path != trained.path
    assert extended.vocab.words[-1] == "zebra"


def test_a_cache_killed_mid_write_is_rebuilt(tiny_paths, tmp_path, monkeypatch):
    cfg = PreprocessConfig()
    real_save = np.save
    calls = {"n": 0}

    def dying_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed mid-write")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(preprocess.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(tiny_paths, cfg, tmp_path)
    monkeypatch.setattr(preprocess.np, "save", real_save)
    final = tmp_path / cache_key(tiny_paths, cfg, None)
    assert not final.exists()  # only the temporary folder was written
    # A half folder under the final name (say, copied by hand) is not trusted either.
    final.mkdir()
    (final / "news_title.npy").write_bytes(b"garbage")
    data = load_or_build(tiny_paths, cfg, tmp_path)
    assert (final / "meta.json").exists()
    assert data.info().num_news == build(tiny_paths, cfg).info().num_news


def test_preprocessing_shows_progress_per_split(tiny_paths, capsys):
    # MIND-large takes minutes to preprocess: each split's behaviors get a bar.
    build(tiny_paths, PreprocessConfig(), progress=True)
    shown = capsys.readouterr().out
    for step in ("news", "train behaviors", "dev behaviors", "test behaviors"):
        assert step in shown
