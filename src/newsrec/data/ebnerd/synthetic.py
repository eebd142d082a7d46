"""The synthetic world written in EB-NeRD's parquet layout, with the same oracle as MIND's.

    ebnerd_synthetic/                   the bundle: articles.parquet, train/, validation/
    ebnerd_testset/                     articles.parquet, test/ (unlabeled; beyond-accuracy
                                        impressions with impression id 0 at the end)
    ebnerd_testset_gt/test/behaviors.parquet   the test week's clicks (what the scorer reads)
    artifacts/synthetic_document_vector/document_vector.parquet   (article_id, vector)
    <split>/click_probability.parquet   the true click probability of every in-view article
    world.json                          written last: a folder without it is not finished

Every file has the published schema (newsrec.data.ebnerd.schema). The news, users, click
model and clicks are the MIND world's (newsrec.data.synthetic): the same seed gives the same
story whatever the layout. Histories follow EB-NeRD: each split's history.parquet holds the
clicks of the `history_days` before that split (the world's history, then the clicks of the
earlier splits).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from newsrec.constants import DAY
from newsrec.data.ebnerd import schema as S
from newsrec.data.ebnerd.presets import EBNERD_PRESETS, EbnerdWorldConfig
from newsrec.data.ebnerd.source import bundle_paths
from newsrec.data.info import SplitPaths
from newsrec.data.source import DataSource
from newsrec.data.synthetic.config import IMPRESSION_BLOCK
from newsrec.data.synthetic.impressions import (
    draw_clicks,
    impression_users_and_times,
    sample_candidates,
)
from newsrec.data.synthetic.streams import stream
from newsrec.data.synthetic.world import World, build_world
from newsrec.utils.io import atomic_path
from newsrec.utils.progress import progress_bar

FOLDERS = {"train": "ebnerd_synthetic/train", "dev": "ebnerd_synthetic/validation"}
FOLDERS["test"] = "ebnerd_testset/test"
VECTORS = "artifacts/synthetic_document_vector/document_vector.parquet"
ARTICLE_BASE = 3_000_000  # EB-NeRD's article ids are 7-digit numbers


def _large_list(offsets: np.ndarray, values: pa.Array) -> pa.LargeListArray:
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def _timestamps(w: World, seconds: np.ndarray) -> pa.Array:
    """Seconds from the world's start -> naive microsecond timestamps, as EB-NeRD's."""
    start = np.datetime64(w.cfg.start_date, "s")
    return pa.array(start + seconds.astype(np.int64).astype("timedelta64[s]")).cast(S.TIMESTAMP)


def _table(columns: dict, schema: pa.Schema) -> pa.Table:
    """A table of `schema`; columns not given are all null (as unknown values in EB-NeRD)."""
    n = len(next(iter(columns.values())))
    arrays = []
    for f in schema:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(value, pa.Array):
            arrays.append(value.cast(f.type))
        else:
            arrays.append(pa.array(value, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _articles(w: World, ids: np.ndarray) -> pa.Table:
    """articles.parquet: every news of the world, rows in a shuffled order."""
    order = stream(w.seed, "ebnerd-articles").permutation(w.num_news)
    parts = [w.news_line[i].split("\t") for i in order.tolist()]
    cats = {name: k for k, name in enumerate(w.categories)}
    subs = {name: k for k, name in enumerate(w.subcategories)}
    n = len(order)
    stamp = _timestamps(w, w.pub[order])
    no_strings = _large_list(np.zeros(n + 1, np.int64), pa.array([], pa.string()))
    subcategory = pa.array([200 + subs[p[2]] for p in parts], pa.int16())
    columns = {
        "article_id": ids[order],
        "title": [p[3] for p in parts],
        "subtitle": [p[4] for p in parts],
        "last_modified_time": stamp,
        "premium": np.zeros(n, bool),
        "body": [p[4] for p in parts],
        "published_time": stamp,
        "image_ids": _large_list(np.zeros(n + 1, np.int64), pa.array([], pa.int64())),
        "article_type": ["article_default"] * n,
        "url": [p[5] for p in parts],
        "ner_clusters": no_strings,
        "entity_groups": no_strings,
        "topics": no_strings,
        "category": np.array([100 + cats[p[1]] for p in parts], np.int16),
        "subcategory": _large_list(np.arange(n + 1), subcategory),
        "category_str": [p[1] for p in parts],
        "sentiment_score": np.full(n, 0.5, np.float32),
        "sentiment_label": ["Neutral"] * n,
    }
    return _table(columns, S.ARTICLES)


def _document_vectors(w: World, ids: np.ndarray, cfg: EbnerdWorldConfig) -> pa.Table:
    """A fixed random projection of each news' latent vector (unit norm) plus noise."""
    rng = stream(w.seed, "ebnerd-document-vectors")
    d = w.latent.shape[1]
    signal = w.latent @ (rng.standard_normal((d, cfg.document_dim)) / np.sqrt(d))
    signal /= np.linalg.norm(signal, axis=1, keepdims=True) + 1e-9
    noise = rng.standard_normal(signal.shape) / np.sqrt(cfg.document_dim)
    vectors = (signal + cfg.document_noise * noise).astype(np.float32)
    offsets = np.arange(w.num_news + 1, dtype=np.int64) * cfg.document_dim
    column = _large_list(offsets, pa.array(vectors.reshape(-1)))
    schema = pa.schema([("article_id", pa.int32()), ("document_vector", column.type)])
    return pa.Table.from_arrays([pa.array(ids, pa.int32()), column], schema=schema)


def _draw(w: World, split: str, m: int) -> dict[str, np.ndarray]:
    """The split's impressions, drawn as the MIND world draws them (same streams)."""
    who, when = impression_users_and_times(w, split, m)
    parts = []
    for block, lo in enumerate(range(0, m, IMPRESSION_BLOCK)):
        rng = stream(w.seed, split, block + 1)
        users, times = who[lo : lo + IMPRESSION_BLOCK], when[lo : lo + IMPRESSION_BLOCK]
        counts, news, logit = sample_candidates(w, users, times, rng)
        p = 1.0 / (1.0 + np.exp(-(logit + w.click_bias)))
        parts.append((counts, news, p, draw_clicks(counts, p, rng)))
    return {
        "user": who,
        "time": when,
        "counts": np.concatenate([c for c, _, _, _ in parts]),
        "news": np.concatenate([n for _, n, _, _ in parts]),
        "p": np.concatenate([p for _, _, p, _ in parts]).astype(np.float32),
        "clicked": np.concatenate([k for _, _, _, k in parts]),
    }


def _beyond_accuracy(w: World, cfg: EbnerdWorldConfig, draw: dict) -> dict:
    """The test set's beyond-accuracy impressions: test users, one shared in-view list of the
    newest articles before the test week, no clicks (not scored for accuracy)."""
    b, k = cfg.beyond_accuracy_impressions, cfg.beyond_accuracy_candidates
    rng = stream(w.seed, "ebnerd-beyond-accuracy")
    start, stop = w.split_window("test")
    before = int(np.searchsorted(w.pub, start))
    news = np.arange(max(before - k, 0), before)
    return {
        "user": rng.choice(w.split_users["test"], b),
        "time": np.floor(start + (stop - start) * rng.random(b)),
        "counts": np.full(b, len(news), np.int64),
        "news": np.tile(news, b),
        "p": np.zeros(b * len(news), np.float32),
        "clicked": np.zeros(b * len(news), bool),
    }


def _world_history(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, time, news) of the world's history clicks: a news read within hours of its
    publication, always before the train week."""
    lengths = np.diff(w.history_offsets)
    user = np.repeat(np.arange(len(lengths)), lengths)
    news = w.history_news.astype(np.int64)
    delay = stream(w.seed, "ebnerd-history-times").exponential(6 * 3600.0, len(news))
    time = np.minimum(w.pub[news] + delay, -1.0)
    return user, np.floor(time), news


def _history(w: World, users: np.ndarray, events, start: float) -> pa.Table:
    """history.parquet of a split starting at `start`: each of `users`' clicks in the
    `history_days` before it, oldest first."""
    user, time, news = events
    keep = (time < start) & (time >= start - w.cfg.history_days * DAY) & np.isin(user, users)
    user, time, news = user[keep], time[keep], news[keep]
    order = np.lexsort((time, user))
    user, time, news = user[order], time[order], news[order]
    row = np.searchsorted(users, user)
    offsets = np.zeros(len(users) + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=len(users)), out=offsets[1:])
    rng = stream(w.seed, "ebnerd-history-reading", int(start))
    columns = {
        "user_id": [int(w.user_id[u][1:]) for u in users.tolist()],
        "impression_time_fixed": _large_list(offsets, _timestamps(w, time)),
        "scroll_percentage_fixed": _large_list(
            offsets, pa.array(rng.uniform(0, 100, len(news)).astype(np.float32))
        ),
        "article_id_fixed": _large_list(offsets, pa.array((ARTICLE_BASE + news).astype(np.int32))),
        "read_time_fixed": _large_list(
            offsets, pa.array(rng.exponential(40.0, len(news)).astype(np.float32))
        ),
    }
    return _table(columns, S.HISTORY)


def _behaviors(w: World, draw: dict, ids: np.ndarray, schema: pa.Schema, beyond=None) -> pa.Table:
    n = len(draw["user"])
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(draw["counts"], out=offsets[1:])
    clicked_offsets = np.zeros(n + 1, np.int64)
    owner = np.repeat(np.arange(n), draw["counts"])
    np.cumsum(np.bincount(owner[draw["clicked"]], minlength=n), out=clicked_offsets[1:])
    rng = stream(w.seed, "ebnerd-behaviors", int(draw["time"].min()) if n else 0)
    article = (ARTICLE_BASE + draw["news"]).astype(np.int32)
    columns = {
        "impression_id": ids,
        "impression_time": _timestamps(w, draw["time"]),
        "read_time": rng.exponential(30.0, n).astype(np.float32),
        "device_type": rng.integers(1, 4, n).astype(np.int8),
        "article_ids_inview": _large_list(offsets, pa.array(article)),
        "article_ids_clicked": _large_list(clicked_offsets, pa.array(article[draw["clicked"]])),
        "user_id": [int(w.user_id[u][1:]) for u in draw["user"].tolist()],
        "is_sso_user": rng.random(n) < 0.3,
        "is_subscriber": rng.random(n) < 0.1,
        "session_id": np.arange(1, n + 1, dtype=np.uint32),
        "is_beyond_accuracy": beyond if beyond is not None else np.zeros(n, bool),
    }
    return _table(columns, schema)


def _probabilities(draw: dict, ids: np.ndarray) -> pa.Table:
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(draw["counts"], out=offsets[1:])
    columns = {"impression_id": ids, "click_probability": _large_list(offsets, pa.array(draw["p"]))}
    return _table(columns, S.CLICK_PROBABILITY)


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _write_split(w: World, cfg: EbnerdWorldConfig, split: str, tmp: Path, events) -> tuple:
    """A split's behaviors, history and click probabilities; returns its clicks as events."""
    m = {"train": w.cfg.train_impressions, "dev": w.cfg.dev_impressions}.get(
        split, w.cfg.test_impressions
    )
    draw = _draw(w, split, m)
    folder = tmp / FOLDERS[split]
    folder.mkdir(parents=True)
    start = w.split_window(split)[0]
    ids = (
        np.arange(1, m + 1, dtype=np.int64)
        + {"train": 0, "dev": 10_000_000, "test": 20_000_000}[split]
    )
    clicks = _click_events(draw)
    if split == "test":
        draw = _concat(draw, _beyond_accuracy(w, cfg, draw))
        beyond = np.arange(len(draw["user"])) >= m
        ids = np.concatenate([ids, np.zeros(int(beyond.sum()), np.int64)])
        S.write_parquet(
            _behaviors(w, draw, ids, S.TEST_BEHAVIORS, beyond), folder / "behaviors.parquet"
        )
        truth = pa.schema([*S.TEST_BEHAVIORS, S.BEHAVIORS.field("article_ids_clicked")])
        (tmp / "ebnerd_testset_gt/test").mkdir(parents=True)
        S.write_parquet(
            _behaviors(w, draw, ids, truth, beyond),
            tmp / "ebnerd_testset_gt/test/behaviors.parquet",
        )
    else:
        S.write_parquet(_behaviors(w, draw, ids, S.BEHAVIORS), folder / "behaviors.parquet")
    users = np.unique(draw["user"])
    S.write_parquet(_history(w, users, events, start), folder / "history.parquet")
    S.write_parquet(_probabilities(draw, ids), folder / "click_probability.parquet")
    stats = {
        "impressions": len(ids),
        "in_view": int(draw["counts"].sum()),
        "clicks": int(draw["clicked"].sum()),
        "users": len(users),
    }
    return clicks, stats


def _click_events(draw: dict):
    owner = np.repeat(np.arange(len(draw["user"])), draw["counts"])[draw["clicked"]]
    return draw["user"][owner], draw["time"][owner] + 60.0, draw["news"][draw["clicked"]]


def generate_ebnerd_world(
    out_dir: Path, cfg: EbnerdWorldConfig, seed: int = 0, progress: bool = True
) -> None:
    """Write the EB-NeRD-layout world of `cfg` to `out_dir`, all or nothing (module docstring)."""
    with atomic_path(out_dir, "partial", replace=False) as tmp, progress_bar(progress) as bar:
        tmp.mkdir()
        task = bar.add_task("EB-NeRD world", total=5)
        w = build_world(cfg.world, seed)
        ids = ARTICLE_BASE + np.arange(w.num_news, dtype=np.int64)
        bar.advance(task)
        events = _world_history(w)
        stats = {}
        for split in ("train", "dev", "test"):
            clicks, stats[split] = _write_split(w, cfg, split, tmp, events)
            events = tuple(np.concatenate([a, b]) for a, b in zip(events, clicks, strict=True))
            bar.advance(task)
        articles = _articles(w, ids)
        S.write_parquet(articles, tmp / "ebnerd_synthetic/articles.parquet")
        S.write_parquet(articles, tmp / "ebnerd_testset/articles.parquet")
        (tmp / VECTORS).parent.mkdir(parents=True)
        S.write_parquet(_document_vectors(w, ids, cfg), tmp / VECTORS)
        summary = {
            "seed": seed,
            "config_digest": cfg.digest(),
            "articles": w.num_news,
            "splits": stats,
        }
        (tmp / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
        bar.advance(task)


def world_paths(folder: Path) -> SplitPaths:
    """SplitPaths of a written world: the bundle, the test set, the document vectors, truth."""
    folder = Path(folder)
    return bundle_paths(
        folder / "ebnerd_synthetic", folder / "ebnerd_testset", folder / VECTORS, None
    )


class SyntheticEbnerdSource(DataSource):
    """A synthetic world in EB-NeRD's layout (data=synthetic_ebnerd), generated once, reused.

    Cached under root/synthetic/<preset>-seed<seed>-<digest>; `overrides` replace WorldConfig
    fields of the preset (as SyntheticSource's)."""

    def __init__(self, preset: str = "synthetic_ebnerd", seed: int = 0, **overrides) -> None:
        if preset not in EBNERD_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(EBNERD_PRESETS)}")
        base = EBNERD_PRESETS[preset]
        extra = {
            k: overrides.pop(k)
            for k in list(overrides)
            if k in EbnerdWorldConfig.__dataclass_fields__
        }
        self.config = replace(base, world=replace(base.world, **overrides), **extra)
        self.preset, self.seed = preset, int(seed)

    def path(self, root: str | Path) -> Path:
        return Path(root) / "synthetic" / f"{self.preset}-seed{self.seed}-{self.config.digest()}"

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        folder = self.path(root)
        if not (folder / "world.json").is_file():
            try:
                generate_ebnerd_world(folder, self.config, self.seed, progress=progress)
            except OSError:
                if not (folder / "world.json").is_file():  # not another rank finishing first
                    raise
        return world_paths(folder)

    def __repr__(self) -> str:
        return f"SyntheticEbnerdSource(preset={self.preset!r}, seed={self.seed})"
