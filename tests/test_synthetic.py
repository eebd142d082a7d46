"""The synthetic MIND world: real MIND files, deterministic, with a truth that ranks well."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from newsrec.data import synthetic
from newsrec.data.synthetic import (
    PRESETS,
    SyntheticSource,
    WorldConfig,
    generate_world,
    load_click_probabilities,
)
from newsrec.data.synthetic import news as syn_news
from newsrec.data.synthetic import source as syn_source
from newsrec.data.synthetic import world as syn_world
from newsrec.data.synthetic import writer as syn_writer

TINY = PRESETS["synthetic_tiny"]
SPLITS = ("train", "dev", "test")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
ENTITY_KEYS = ["Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(out, TINY, seed=0, progress=False)
    return out


def read_news(split_dir: Path) -> dict[str, list[str]]:
    rows = {}
    for line in (split_dir / "news.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        assert len(cols) == 8, f"news.tsv row with {len(cols)} columns: {line[:80]}"
        assert cols[0] not in rows, f"news {cols[0]} listed twice"
        rows[cols[0]] = cols
    return rows


def read_behaviors(split_dir: Path) -> list[list[str]]:
    rows = [line.split("\t") for line in (split_dir / "behaviors.tsv").read_text().splitlines()]
    for cols in rows:
        assert len(cols) == 5, f"behaviors.tsv row with {len(cols)} columns"
    return rows


def labels_of(split_dir: Path) -> dict[int, np.ndarray]:
    """Impression id -> 0/1 labels in candidate order (truth.txt for the unlabeled test)."""
    if split_dir.name == "test":
        out = {}
        for line in (split_dir / "truth.txt").read_text().splitlines():
            iid, labels = line.split(" ")
            out[int(iid)] = np.array(labels[1:-1].split(","), dtype=int)
        return out
    return {
        int(c[0]): np.array([int(x.rsplit("-", 1)[1]) for x in c[4].split()])
        for c in read_behaviors(split_dir)
    }


def mean_auc(scores: dict[int, np.ndarray], labels: dict[int, np.ndarray]) -> float:
    return float(
        np.mean([roc_auc_score(y, scores[i]) for i, y in labels.items() if 0 < y.sum() < len(y)])
    )


@pytest.mark.parametrize("split", SPLITS)
def test_news_files_parse_as_mind_with_entity_offsets_on_the_surface_form(world, split):
    news = read_news(world / split)
    assert len(news) > 50
    mentions = 0
    for nid, cat, sub, title, abstract, url, title_ents, abstract_ents in news.values():
        assert re.fullmatch(r"N\d+", nid) and cat and sub and title
        assert url.startswith("https://")
        for text, column in ((title, title_ents), (abstract, abstract_ents)):
            for entity in json.loads(column):
                assert list(entity) == ENTITY_KEYS
                assert re.fullmatch(r"Q\d+", entity["WikidataId"])
                assert 0 < entity["Confidence"] <= 1
                assert len(entity["OccurrenceOffsets"]) == len(entity["SurfaceForms"])
                for offset, surface in zip(
                    entity["OccurrenceOffsets"], entity["SurfaceForms"], strict=True
                ):
                    assert text[offset : offset + len(surface)] == surface
                    mentions += 1
    assert mentions > 0
    titles = [len(row[3].split()) for row in news.values()]
    assert 9 < np.mean(titles) < 14  # MIND: 11.5 words
    assert len(set(titles)) > 5  # lengths vary


@pytest.mark.parametrize("split", SPLITS)
def test_behaviors_parse_as_mind_and_refer_to_listed_news(world, split):
    news = read_news(world / split)
    rows = read_behaviors(world / split)
    ids = [int(c[0]) for c in rows]
    assert ids == list(range(1, len(ids) + 1))  # 1-based, unique
    candidate = r"N\d+-[01]" if split != "test" else r"N\d+"
    empty_histories = 0
    for _iid, user, stamp, history, impressions in rows:
        assert re.fullmatch(r"U\d+", user)
        datetime.strptime(stamp, TIME_FORMAT)  # MIND's `11/9/2019 6:11:24 AM`
        assert re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d\d:\d\d [AP]M", stamp)
        empty_histories += history == ""
        assert all(n in news for n in history.split())
        cands = impressions.split()
        assert cands and all(re.fullmatch(candidate, c) for c in cands)
        bare = [c.split("-")[0] for c in cands]
        assert all(n in news for n in bare)
        assert len(set(bare)) == len(bare)  # a news is shown once per impression
    assert empty_histories < len(rows)


@pytest.mark.parametrize("split", SPLITS)
def test_embedding_files_hold_100_floats_per_row_and_skip_a_few_entities(world, split):
    rows = [
        line.split("\t")
        for line in (world / split / "entity_embedding.vec").read_text().splitlines()
    ]
    assert rows and all(len(r) == 101 and re.fullmatch(r"Q\d+", r[0]) for r in rows)
    np.array([r[1:] for r in rows], dtype=float)
    relations = (world / split / "relation_embedding.vec").read_text().splitlines()
    assert relations and all(len(r.split("\t")) == 101 for r in relations)
    named = {
        e["WikidataId"]
        for row in read_news(world / split).values()
        for column in row[6:]
        for e in json.loads(column)
    }
    with_row = {r[0] for r in rows}
    assert with_row <= named
    assert len(named - with_row) >= 1  # as in MIND, some entities have no vector


@pytest.mark.parametrize("split", ["train", "dev"])
def test_every_labeled_impression_has_a_click(world, split):
    labels = labels_of(world / split)
    assert all(y.sum() >= 1 for y in labels.values())
    clicks = np.mean([y.sum() for y in labels.values()])
    assert 1.0 < clicks < 3.0  # calibrated to clicks_per_impression (1.5 for tiny)


def test_test_split_is_unlabeled_and_its_truth_is_aligned(world):
    rows = read_behaviors(world / "test")
    truth_lines = (world / "test" / "truth.txt").read_text().splitlines()
    assert len(truth_lines) == len(rows)
    for cols, line in zip(rows, truth_lines, strict=True):
        assert "-" not in cols[4]
        assert re.fullmatch(r"\d+ \[[01](,[01])*\]", line)
        iid, labels = line.split(" ")
        assert iid == cols[0]
        assert len(labels[1:-1].split(",")) == len(cols[4].split())
        assert "1" in labels


@pytest.mark.parametrize("split", SPLITS)
def test_click_probabilities_are_aligned_with_candidates(world, split):
    probs = load_click_probabilities(world / split)
    rows = read_behaviors(world / split)
    assert list(probs) == [int(c[0]) for c in rows]
    for cols in rows:
        p = probs[int(cols[0])]
        assert len(p) == len(cols[4].split())
        assert np.all((p > 0) & (p < 1))


def test_dev_has_unseen_users_and_unseen_news(world):
    train_users = {c[1] for c in read_behaviors(world / "train")}
    dev = read_behaviors(world / "dev")
    dev_users = {c[1] for c in dev}
    assert 0.5 < len(dev_users - train_users) / len(dev_users) < 1.0  # most new, a few return
    train_news = set(read_news(world / "train"))
    dev_candidates = {c.split("-")[0] for cols in dev for c in cols[4].split()}
    assert dev_candidates - train_news  # cold-start news
    assert dev_candidates & train_news  # and news still alive from the train days


def test_train_spans_several_days_then_dev_then_test(world):
    def times(split):
        return [datetime.strptime(c[2], TIME_FORMAT) for c in read_behaviors(world / split)]

    train, dev, test = times("train"), times("dev"), times("test")
    assert len({t.date() for t in train}) == TINY.train_days
    assert min(train).date().isoformat() == TINY.start_date
    assert max(train) < min(dev) and max(dev) < min(test)


def test_same_seed_gives_identical_files_and_another_seed_differs(world, tmp_path):
    generate_world(tmp_path / "again", TINY, seed=0, progress=False)
    generate_world(tmp_path / "other", TINY, seed=1, progress=False)
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 5 + 1  # world.json, 5 files per split, truth.txt
    for name in files:
        assert (world / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    for name in ["train/behaviors.tsv", "dev/news.tsv", "test/click_probability.tsv"]:
        assert (world / name).read_bytes() != (tmp_path / "other" / name).read_bytes()


def test_oracle_ranks_better_than_random_and_than_a_noisy_truth(world):
    labels = labels_of(world / "dev")
    truth = load_click_probabilities(world / "dev")
    rng = np.random.default_rng(0)
    random = {i: rng.random(len(p)) for i, p in truth.items()}
    noisy = {i: np.log(p / (1 - p)) + rng.normal(0, 2.0, len(p)) for i, p in truth.items()}
    oracle_auc = mean_auc(truth, labels)
    assert oracle_auc > mean_auc(noisy, labels) + 0.03
    assert mean_auc(noisy, labels) > mean_auc(random, labels)
    assert oracle_auc > 0.65


def test_a_modifier_acts_on_the_next_topical_word_within_reach():
    # Same words, different order, different meaning: "not" negates only what follows it.
    w = syn_world.World(cfg=TINY, seed=0)
    syn_world.build_topics(w)
    syn_world.build_words(w)
    not_ = w.words.index("not")
    word = w.first_topical
    the = w.words.index("the")
    conf = iter([1.0] * 10)

    def factors(ids):
        return [f for _, f in syn_news._render(w, [(0, i) for i in ids], conf, title=True)[2]]

    assert factors([not_, the, word]) == [TINY.negation_factor]
    assert factors([word, the, not_]) == [1.0]
    far = [not_] + [the] * TINY.modifier_reach + [word]
    assert factors(far) == [1.0]


def test_source_generates_once_then_reuses_the_world(tmp_path, monkeypatch):
    source = SyntheticSource("synthetic_tiny", seed=3)
    paths = source.prepare(tmp_path, progress=False)
    assert paths.has_truth and paths.test is not None
    assert paths.train.parent == tmp_path / "synthetic" / source.name
    assert source.name.startswith("synthetic_tiny-seed3-")
    stamp = (paths.train / "behaviors.tsv").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("an existing world was generated again")

    monkeypatch.setattr(syn_source, "generate_world", must_not_run)
    again = SyntheticSource("synthetic_tiny", seed=3).prepare(tmp_path, progress=False)
    assert again == paths
    assert (paths.train / "behaviors.tsv").stat().st_mtime_ns == stamp


def test_source_does_not_trust_a_half_written_world(tmp_path):
    source = SyntheticSource("synthetic_tiny", seed=0)
    folder = source.path(tmp_path)
    # a killed run's temp folder, and a final folder that lacks its world.json
    partial = folder.with_name(f".{folder.name}.partial-{socket.gethostname()}-{2**22 + 1}")
    (partial / "train").mkdir(parents=True)
    (partial / "train" / "behaviors.tsv").write_text("1\tU1\n")
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "behaviors.tsv").write_text("garbage\n")
    paths = source.prepare(tmp_path, progress=False)
    assert (folder / "world.json").is_file()
    assert len(read_behaviors(paths.train)) == TINY.train_impressions
    assert not partial.exists()  # its process is gone: cleaned up


def test_a_failed_generation_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    real = syn_writer.write_split

    def fail_on_dev(w, split, *args):
        if split == "dev":
            raise KeyboardInterrupt  # as if the run was killed half-way
        return real(w, split, *args)

    monkeypatch.setattr(syn_writer, "write_split", fail_on_dev)
    with pytest.raises(KeyboardInterrupt):
        generate_world(tmp_path / "world", TINY, progress=False)
    assert not (tmp_path / "world").exists()
    assert list(tmp_path.iterdir()) == []


def test_overrides_change_the_world_folder_and_bad_knobs_are_refused(tmp_path):
    base = SyntheticSource("synthetic_tiny")
    bigger = SyntheticSource("synthetic_tiny", num_news=500)
    assert bigger.config.num_news == 500 and bigger.name != base.name
    with pytest.raises(ValueError, match="num_newz"):
        SyntheticSource("synthetic_tiny", num_newz=500)
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        SyntheticSource("mind_tiny")
    with pytest.raises(ValueError, match="num_users"):
        WorldConfig(num_users=10, train_user_share=0.9, dev_user_share=0.9)
    (tmp_path / "mine.txt").write_text("not a world")
    with pytest.raises(FileExistsError):
        generate_world(tmp_path, TINY, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "not a world"


def test_command_line_writes_a_world(tmp_path, capsys):
    synthetic.main(["--preset", "synthetic_tiny", "--seed", "2", "--out", str(tmp_path / "w"),
                    "--no-progress", "--set", "num_news=450"])  # fmt: skip
    printed = capsys.readouterr().out
    assert str(tmp_path / "w") in printed and "MiB" in printed
    summary = json.loads((tmp_path / "w" / "world.json").read_text())
    assert summary["seed"] == 2 and summary["config"]["num_news"] == 450


def test_click_probability_reader_names_the_bad_line(tmp_path):
    (tmp_path / "click_probability.tsv").write_text("1\t0.5 0.25\n2 0.5\n")
    with pytest.raises(ValueError, match=r"click_probability.tsv:2"):
        load_click_probabilities(tmp_path)
    (tmp_path / "click_probability.tsv").write_text("1\t0.5 0.25\n2\t0.5 oops\n")
    with pytest.raises(ValueError, match="not a number"):
        load_click_probabilities(tmp_path)
    with pytest.raises(FileNotFoundError, match="only synthetic worlds"):
        load_click_probabilities(tmp_path / "nowhere")
