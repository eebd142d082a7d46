"""RADio's metrics (newsrec.evaluation.radio) against loops written from the paper's formulas,
against RADio's own reported behaviour, and the per-news features they read."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from newsrec.evaluation import radio
from newsrec.evaluation.news_features import (
    NewsFeatures,
    NewsRow,
    cache_key,
    entity_features,
    load_or_compute,
)
from newsrec.evaluation.radio import RadioSettings
from newsrec.evaluation.radio_metric import NewsTables, RadioMetric

# Ten news rows (row 0 is padding): category, subcategory, complexity, sentiment, and entity
# type mentions (person, organisation, place), persons split (minority, majority).
CATEGORY = [0, 1, 1, 2, 3, 3, 1, 2, 2, 3]
SUBCATEGORY = [0, 1, 2, 3, 4, 5, 1, 3, 6, 5]
COMPLEXITY = [np.nan, 70.0, 55.0, 30.0, 90.0, 62.0, 45.0, np.nan, 10.0, 80.0]
SENTIMENT = [0.0, 0.9, -0.4, 0.0, 0.1, -0.8, 0.5, 0.3, -0.05, 0.0]
TYPES = [[0, 0, 0], [2, 1, 0], [0, 0, 0], [1, 0, 3], [0, 2, 0], [1, 1, 1], [0, 0, 2],
         [3, 0, 0], [0, 1, 0], [1, 0, 0]]  # fmt: skip
VOICES = [[0, 0], [1, 1], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0], [2, 1], [0, 0], [0, 1]]

LISTS = [[3, 1, 5, 6], [2, 8, 4, -1], [9, 7, 1, 3], [6, -1, -1, -1]]
HISTORIES = [[1, 2, 6], [], [4, 5, 3, 8, 9], [7, 8]]  # oldest first
POOLS = [[1, 3, 5, 6, 8, 9], [2, 4, 8, 7], [1, 3, 7, 9, 2], [6, 2, 4]]


# -- the paper's formulas, one list at a time ---------------------------------------------------
def weight(rank: int, discount: str) -> float:
    return {"mrr": 1 / rank, "ndcg": 1 / math.log2(1 + rank), "none": 1.0}[discount]


def distribution(items: list, discount: str | None) -> dict:
    """Q*(x) = sum_i w_R_i q(x|i) / sum_i w_R_i; items: (rank, {x: count}) pairs; `None`
    weighs every item 1 (the unweighted context)."""
    mass, total = {}, 0.0
    for rank, counts in items:
        share = sum(counts.values())
        if not share:
            continue
        w = 1.0 if discount is None else weight(rank, discount)
        total += w
        for x, c in counts.items():
            mass[x] = mass.get(x, 0.0) + w * c / share
    return {x: m / total for x, m in mass.items()} if total else {}


def divergence(p: dict, q: dict, kind: str, alpha: float = 0.001) -> float:
    if not p or not q:
        return math.nan
    keys = set(p) | set(q)
    ps = {x: (1 - alpha) * p.get(x, 0) + alpha * q.get(x, 0) for x in keys}
    qs = {x: (1 - alpha) * q.get(x, 0) + alpha * p.get(x, 0) for x in keys}

    def kl(a, b):
        return sum(a[x] * math.log2(a[x] / b[x]) for x in keys if a[x] > 0)

    if kind == "kl":
        return kl(ps, qs)
    m = {x: (ps[x] + qs[x]) / 2 for x in keys}
    return 0.5 * kl(ps, m) + 0.5 * kl(qs, m)


def ranked(rows: list[int], feature) -> list:
    """(rank, {x: count}) of a list's valid rows, rank counted over those rows."""
    rows = [r for r in rows if r > 0]
    return [(rank, feature(r)) for rank, r in enumerate(rows, start=1)]


def binned(value: float, low: float, high: float, bins: int = 5) -> int:
    if high == low:
        return 0
    return int(min(max(math.floor((value - low) / (high - low) * bins), 0), bins - 1))


def loop_values(i: int, kind: str, discount: str) -> dict[str, float]:
    """Every per-list metric of list i, from the formulas."""
    lst, hist, pool = LISTS[i], HISTORIES[i][::-1], POOLS[i]  # history: most recent first
    out = {}
    for name, table in (
        ("calibration_category", CATEGORY),
        ("calibration_subcategory", SUBCATEGORY),
    ):
        p = distribution(ranked(hist, lambda r, t=table: {t[r]: 1}), discount)
        q = distribution(ranked(lst, lambda r, t=table: {t[r]: 1}), discount)
        out[name] = divergence(p, q, kind)
    known = [r for r in hist if not math.isnan(COMPLEXITY[r])]
    low, high = (
        (min(COMPLEXITY[r] for r in known), max(COMPLEXITY[r] for r in known)) if known else (0, 0)
    )
    listed = [r for r in lst if r > 0 and not math.isnan(COMPLEXITY[r])]
    p = distribution(ranked(known, lambda r: {binned(COMPLEXITY[r], low, high): 1}), discount)
    q = distribution(ranked(listed, lambda r: {binned(COMPLEXITY[r], low, high): 1}), discount)
    out["calibration_complexity"] = divergence(p, q, kind)
    affect = [abs(SENTIMENT[r]) for r in pool]
    low, high = min(affect), max(affect)
    p = distribution([(1, {binned(abs(SENTIMENT[r]), low, high): 1}) for r in pool], None)
    q = distribution(ranked(lst, lambda r: {binned(abs(SENTIMENT[r]), low, high): 1}), discount)
    out["activation"] = divergence(p, q, kind)
    for name, table in (("representation", TYPES), ("alternative_voices", VOICES)):
        p = distribution([(1, dict(enumerate(table[r]))) for r in pool], None)
        q = distribution(ranked(lst, lambda r, t=table: dict(enumerate(t[r]))), discount)
        out[name] = divergence(p, q, kind)
    return out


# -- the vectorised metric ----------------------------------------------------------------------
def tables() -> NewsTables:
    features = NewsFeatures(
        complexity=np.array(COMPLEXITY, np.float32),
        sentiment=np.array(SENTIMENT, np.float32),
        entity_types=np.array(TYPES, np.float32),
        voices=np.array(VOICES, np.float32),
        types=["O", "P", "G"],
    )
    table = {"category": torch.tensor(CATEGORY), "subcategory": torch.tensor(SUBCATEGORY)}
    return NewsTables.build(table, features)


def padded(rows: list[list[int]], fill: int, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor(
        [[fill] * (width - len(r)) + r if left else r + [fill] * (width - len(r)) for r in rows]
    )


def metric(**options) -> RadioMetric:
    m = RadioMetric(k=4, settings=RadioSettings(**options), pairs=1000)
    m.set_tables(tables())
    return m


@pytest.mark.parametrize("kind", ["js", "kl"])
@pytest.mark.parametrize("discount", ["mrr", "ndcg", "none"])
def test_every_per_list_metric_is_its_formula(kind, discount):
    m = metric(divergence=kind, discount=discount)
    lists, pool = torch.tensor(LISTS), padded(POOLS, 0)
    m.update(lists, torch.arange(4), padded(HISTORIES, 0, left=True), pool)
    for name in ("calibration_category", "calibration_subcategory", "calibration_complexity",
                 "activation", "representation", "alternative_voices"):  # fmt: skip
        got = torch.cat(getattr(m, name)).double().numpy()
        want = [loop_values(i, kind, discount)[name] for i in range(4)]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True, err_msg=name)
    values = torch.cat(m.calibration_category)
    assert math.isnan(values[1])  # an empty history has no distribution: left out
    if kind == "js":
        assert ((values[~values.isnan()] >= 0) & (values[~values.isnan()] <= 1)).all()


def test_fragmentation_is_the_mean_divergence_of_the_drawn_pairs():
    a = torch.tensor([[1, 2, 2, -1], [3, 3, 1, 4]])
    b = torch.tensor([[2, 1, -1, -1], [4, 4, 4, 4]])
    settings = RadioSettings(divergence="kl")
    got = radio.fragmentation(a, a >= 0, b, b >= 0, settings)
    for i in range(2):
        p = distribution(ranked([x + 1 for x in a[i].tolist() if x >= 0], lambda r: {r: 1}), "mrr")
        q = distribution(ranked([x + 1 for x in b[i].tolist() if x >= 0], lambda r: {r: 1}), "mrr")
        assert got[i].item() == pytest.approx(divergence(p, q, "kl"), rel=1e-5)
    same = radio.fragmentation(a, a >= 0, a, a >= 0, settings)
    assert same.abs().max() < 1e-6  # identical lists are not fragmented
    # The metric: pairs drawn from the lists in impression id order, whatever the batches.
    m1, m2 = metric(), metric()
    lists, pool, history = torch.tensor(LISTS), padded(POOLS, 0), padded(HISTORIES, 0, left=True)
    m1.update(lists, torch.arange(4), history, pool)
    m2.update(lists[2:], torch.arange(2, 4), history[2:], pool[2:])
    m2.update(lists[:3], torch.arange(3), history[:3], pool[:3])  # a repeat counts once
    one, two = m1.compute(), m2.compute()
    assert one == two
    assert one["fragmentation_pairs@4"] == 6  # C(4, 2) pairs at most: fewer than `pairs`
    assert 0 < one["fragmentation@4"] <= 1


def test_without_rank_awareness_a_list_of_the_whole_pool_does_not_diverge():
    """RADio's README: 'without rank-awareness and cutoff no divergence is found for the
    Activation, Representation and Alternative Voices metrics, as in these cases the
    recommendation and the context are identical'; with rank-awareness there is one."""
    pool = padded(POOLS, 0)
    history = padded(HISTORIES, 0, left=True)
    for discount, zero in (("none", True), ("mrr", False)):
        m = RadioMetric(k=pool.shape[1], settings=RadioSettings(discount=discount))
        m.set_tables(tables())
        m.update(pool.masked_fill(pool == 0, -1), torch.arange(4), history, pool)
        for name in ("activation", "representation", "alternative_voices"):
            values = torch.cat(getattr(m, name))
            values = values[~values.isnan()]  # the last pool mentions no person
            assert len(values) >= 3 and (values.abs().max() < 1e-6) == zero, (name, discount)


def test_random_lists_are_less_calibrated_than_the_oracle_as_radio_reports(tiny_data):
    """RADio's tables (KL and JS, README and paper): random recommendations are the least
    calibrated to users' histories of every recommender. On the synthetic world clicks follow
    users' interests, so lists by the true click probability must be more calibrated."""
    from newsrec.data.datamodule import EvalBatchSampler, EvalImpressions
    from newsrec.serving.ranking import top_k_candidates

    dev = tiny_data.splits["dev"]
    dataset = EvalImpressions(dev, np.arange(len(dev)), 50)
    news = {
        n: torch.from_numpy(np.asarray(tiny_data.news[n], dtype=np.int64))
        for n in ("category", "subcategory")
    }
    rows = len(news["category"])
    empty = NewsFeatures(
        *(np.zeros(rows, np.float32),) * 2,
        np.zeros((rows, 1), np.float32),
        np.zeros((rows, 2), np.float32),
        ["P"],
    )
    results = {}
    for ranking in ("oracle", "random"):
        m = RadioMetric(10, RadioSettings(divergence="kl"), pairs=1000)
        m.set_tables(NewsTables.build(news, empty))
        generator = torch.Generator().manual_seed(0)
        for positions in EvalBatchSampler(dataset.group_key, 256):
            batch = dataset.__getitems__(positions)
            scores = (
                batch["truth"]
                if ranking == "oracle"
                else torch.rand(batch["truth"].shape, generator=generator)
            )
            top, _ = top_k_candidates(scores, batch["candidates"], batch["candidate_mask"], 10)
            m.update(
                top,
                batch["impression"],
                batch["history"][batch["owner"]],
                batch["candidates"],
                batch["candidate_mask"],
            )
        results[ranking] = m.compute()
    for name in ("calibration_category@10", "calibration_subcategory@10"):
        assert results["oracle"][name] < results["random"][name], name


# -- the features ---------------------------------------------------------------------------------
def _entity(kind: str, qid: str, times: int = 1) -> dict:
    return {"Type": kind, "WikidataId": qid, "OccurrenceOffsets": list(range(times))}


def _row(title: str, entities: list[dict]) -> NewsRow:
    import json

    return NewsRow(title, "", f"{json.dumps(entities)}\t[]")


def test_entity_types_and_voices_count_mentions_and_split_persons_by_how_often_they_appear():
    rows = [
        NewsRow("", "", ""),
        _row("a", [_entity("P", "Q1", 3), _entity("O", "Q9")]),
        _row("b", [_entity("P", "Q1"), _entity("P", "Q2")]),
        _row("c", [_entity("P", "Q3"), _entity("G", "Q8", 2)]),
        _row("d", []),
    ]
    types, voices, names = entity_features(rows)
    assert names == ["G", "O", "P"]
    np.testing.assert_array_equal(types[1], [0, 1, 3])
    np.testing.assert_array_equal(types[3], [2, 0, 1])
    # Q1 has 4 of 6 person mentions: alone it makes up half of them, the majority voice.
    np.testing.assert_array_equal(voices[1:], [[0, 3], [1, 1], [1, 0], [0, 0]])


def test_features_are_cached_by_the_news_text(tmp_path):
    pytest.importorskip("textstat")
    pytest.importorskip("vaderSentiment")
    import textstat
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lines = [
        "N1\tnews\tpolitics\tA terrible, awful day\tThe storm destroyed the town.\t\t[]\t[]",
        "N2\tsports\tsoccer\tGreat win\t\t\t[]\t[]",
    ]
    path = tmp_path / "news.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    features = load_or_compute([path], tmp_path / "cache", progress=False)
    assert math.isnan(features.complexity[0])  # the padding row has no text
    text = "A terrible, awful day The storm destroyed the town."
    assert features.complexity[1] == pytest.approx(textstat.flesch_reading_ease(text), rel=1e-6)
    analyzer = SentimentIntensityAnalyzer()
    assert features.sentiment[1] == pytest.approx(
        analyzer.polarity_scores(text)["compound"], rel=1e-6
    )
    assert features.sentiment[1] < 0 < features.sentiment[2]
    folders = [p for p in (tmp_path / "cache" / "news_features").iterdir() if p.is_dir()]
    again = load_or_compute([path], tmp_path / "cache", progress=False)  # from the cache
    np.testing.assert_array_equal(again.sentiment, features.sentiment)
    path.write_text("\n".join(lines[:1]) + "\n", encoding="utf-8")  # another text: another key
    assert len(load_or_compute([path], tmp_path / "cache", progress=False)) == 2
    assert len([p for p in (tmp_path / "cache" / "news_features").iterdir() if p.is_dir()]) == 2
    rows = [NewsRow("", "", "")] + [NewsRow(*c.split("\t")[3:5], "[]\t[]") for c in lines]
    assert [f.name for f in folders] == [cache_key(rows)]


def test_the_sample_of_impressions_is_a_fixed_share_whatever_the_batches():
    from newsrec.evaluation.radio_callback import sampled

    ids = torch.arange(100_000, 160_000)
    whole = set(ids[sampled(ids, 0.1)].tolist())
    parts = set()
    for part in (ids[:17_000], ids[17_000:], ids[5:9]):
        parts |= set(part[sampled(part, 0.1)].tolist())
    assert whole == parts
    assert 5_400 < len(whole) < 6_600  # about 10% of 60,000
    assert len(sampled(ids, 1.0)) == len(ids)
