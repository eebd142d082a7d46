"""The synthetic world's story, step 6: who sees which candidates when, and what they click.

p = sigmoid(click_bias + user_bias + taste_scale * taste(t) . latent
            + popularity_weight * log_popularity - recency_weight * age_in_days)
"""

from __future__ import annotations

import numpy as np

from newsrec.data.ragged import lengths_to_offsets
from newsrec.data.synthetic.config import DAY, DEDUP_ROUNDS, HOUR
from newsrec.data.synthetic.state import World
from newsrec.data.synthetic.streams import (
    alias_draw,
    alias_table,
    draw_from_cdf,
    seen_before,
    stream,
)


def build_alive(w: World) -> None:
    """Per hour of the impression days: the news alive at its start, and an alias table."""
    cfg = w.cfg
    hours = 24 * (cfg.train_days + cfg.dev_days + cfg.test_days)
    weight = np.exp(cfg.candidate_popularity_skew * w.log_pop)
    starts, news, probs, aliases = [0], [], [], []
    for b in range(hours):
        t = b * HOUR
        hi = np.searchsorted(w.pub, t, side="right")
        alive = np.flatnonzero(w.end[:hi] > t)
        if len(alive) < 2:
            raise ValueError(
                f"fewer than 2 news alive at hour {b} of the impression days: raise num_news, "
                "news_lifetime_days or lower history_news_share"
            )
        prob, alias = alias_table(weight[alive])
        news.append(alive)
        probs.append(prob)
        aliases.append(alias + starts[-1])
        starts.append(starts[-1] + len(alive))
    w.alive_start = np.array(starts)
    w.alive_news = np.concatenate(news)
    w.alive_prob = np.concatenate(probs)
    w.alive_alias = np.concatenate(aliases)


# ---------------------------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------------------------


def impression_users_and_times(w: World, split: str, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Who makes each impression of a split and when (seconds from train start)."""
    rng = stream(w.seed, split, 0)
    users = w.split_users[split]
    if m >= len(users):
        # every user of the split at least once, the rest shared out by activity
        p = w.activity[users] / w.activity[users].sum()
        extra = users[draw_from_cdf(np.cumsum(p), rng.random(m - len(users)))]
        who = rng.permutation(np.concatenate([users, extra]))
    else:
        who = rng.choice(users, m, replace=False, p=w.activity[users] / w.activity[users].sum())
    start, stop = w.split_window(split)
    days = int(round((stop - start) / DAY))
    # more impressions by day than by night (peak early afternoon)
    diurnal = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 14) / 24)
    hour = draw_from_cdf(np.cumsum(diurnal) / diurnal.sum(), rng.random(m))
    t = start + DAY * rng.integers(0, days, m) + HOUR * hour + np.floor(HOUR * rng.random(m))
    return who, t


def sample_candidates(
    w: World, users: np.ndarray, times: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of impressions and their click logits (without click_bias).

    Returns counts [n], news [sum(counts)] grouped by impression, logits [sum(counts)].
    """
    cfg, n = w.cfg, len(users)
    bucket = (times // HOUR).astype(np.int64)
    alive = w.alive_start[bucket + 1] - w.alive_start[bucket]
    sigma = cfg.candidates_sigma
    mu = np.log(cfg.candidates_mean - 2 + 1e-9) - sigma**2 / 2
    want = 2 + np.round(rng.lognormal(mu, sigma, n)).astype(np.int64)
    want = np.minimum(np.minimum(want, cfg.candidates_max), alive)
    loc = np.repeat(np.arange(n), want)
    b = bucket[loc]

    def draw(rows: np.ndarray) -> np.ndarray:
        start = w.alive_start[b[rows]]
        size = w.alive_start[b[rows] + 1] - start
        u = rng.random((len(rows), 2))
        return w.alive_news[alias_draw(w.alive_prob, w.alive_alias, start, size, u)]

    news = draw(np.arange(len(loc)))
    for _ in range(DEDUP_ROUNDS):
        dup = seen_before(loc, news, w.num_news)
        if not dup.any():
            break
        news[dup] = draw(np.flatnonzero(dup))
    keep = ~seen_before(loc, news, w.num_news)
    loc, news = loc[keep], news[keep]
    counts = np.bincount(loc, minlength=n)
    days = (times / DAY).astype(np.float32)[:, None]
    taste = w.taste[users] + cfg.drift_per_day * days * w.drift[users]  # [n, D]
    score = np.einsum("ij,ij->i", taste[loc], w.latent[news])
    age = np.maximum(times[loc] - w.pub[news], 0.0) / DAY
    logit = (
        w.user_bias[users][loc]
        + cfg.taste_scale * score
        + cfg.popularity_weight * w.log_pop[news]
        - cfg.recency_weight * age
    )
    return counts, news, logit


def _expected_clicks(logit: np.ndarray, loc: np.ndarray, n: int, bias: float) -> float:
    """Mean clicks per impression, the forced click of click-less impressions included."""
    p = 1.0 / (1.0 + np.exp(-(logit + bias)))
    mean = np.bincount(loc, weights=p, minlength=n)
    none = np.exp(np.bincount(loc, weights=np.log1p(-np.minimum(p, 1 - 1e-12)), minlength=n))
    return float((mean + none).mean())


def calibrate_click_bias(w: World) -> float:
    """The click_bias giving `clicks_per_impression` on a sample of train impressions."""
    rng = stream(w.seed, "calibration")
    users = w.split_users["train"]
    m = 2000
    who = users[rng.integers(0, len(users), m)]
    start, stop = w.split_window("train")
    times = np.floor(start + (stop - start) * rng.random(m))
    counts, _, logit = sample_candidates(w, who, times, rng)
    loc = np.repeat(np.arange(m), counts)
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _expected_clicks(logit, loc, m, mid) < w.cfg.clicks_per_impression:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def draw_clicks(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli(p) clicks; an impression without one gets one drawn in proportion to p."""
    n = len(counts)
    loc = np.repeat(np.arange(n), counts)
    clicked = rng.random(len(p)) < p
    none = np.flatnonzero((np.bincount(loc, weights=clicked, minlength=n) == 0) & (counts > 0))
    if len(none):
        starts = lengths_to_offsets(counts)[:-1]
        cum = np.cumsum(p)
        before = np.where(starts[none] > 0, cum[np.maximum(starts[none] - 1, 0)], 0.0)
        total = cum[starts[none] + counts[none] - 1] - before
        target = before + rng.random(len(none)) * total
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, starts[none], starts[none] + counts[none] - 1)
        clicked[pos] = True
    return clicked


def format_times(w: World, t: np.ndarray) -> list[str]:
    """MIND's `11/9/2019 6:11:24 AM`: month, day and hour without leading zeros."""
    stamp = np.datetime64(w.cfg.start_date, "s") + t.astype(np.int64).astype("timedelta64[s]")
    day = stamp.astype("datetime64[D]")
    month = stamp.astype("datetime64[M]")
    year = stamp.astype("datetime64[Y]")
    y = (year.astype(np.int64) + 1970).tolist()
    mo = (month.astype(np.int64) % 12 + 1).tolist()
    d = ((day - month.astype("datetime64[D]")).astype(np.int64) + 1).tolist()
    sec = (stamp - day.astype("datetime64[s]")).astype(np.int64)
    hh, mm, ss = (sec // 3600).tolist(), (sec // 60 % 60).tolist(), (sec % 60).tolist()
    return [
        f"{a}/{b}/{c} {(h % 12) or 12}:{mi:02d}:{s:02d} {'AM' if h < 12 else 'PM'}"
        for a, b, c, h, mi, s in zip(mo, d, y, hh, mm, ss, strict=True)
    ]
