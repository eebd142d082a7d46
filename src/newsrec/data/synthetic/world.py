"""The synthetic world's story, steps 1-3 and 5: topics, words, entities, users, histories.

Step 4 (news) is in `news.py`, step 6 (impressions) in `impressions.py`; `build_world` runs
them all in order. The package docstring (`newsrec.data.synthetic`) tells the whole story.
"""

from __future__ import annotations

import numpy as np

from newsrec.data.ragged import lengths_to_offsets
from newsrec.data.synthetic.config import (
    CATEGORY_NAMES,
    DAY,
    ENTITY_DIM,
    ENTITY_TYPE_P,
    ENTITY_TYPE_WORDS,
    ENTITY_TYPES,
    FUNCTION_WORDS,
    INTENSIFIERS,
    NEGATIONS,
    RELATIONS,
    USER_BLOCK,
    WorldConfig,
    user_counts,
)
from newsrec.data.synthetic.impressions import build_alive, calibrate_click_bias
from newsrec.data.synthetic.news import build_news, subcategory_in
from newsrec.data.synthetic.state import World
from newsrec.data.synthetic.streams import (
    alias_draw,
    alias_table,
    draw_from_cdf,
    pseudo_words,
    random_units,
    seen_before,
    stream,
    unit,
    zipf_cdf,
)


def build_topics(w: World) -> None:
    cfg, rng = w.cfg, stream(w.seed, "topics")
    n_cat = cfg.num_categories
    w.categories = [
        CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"topic{i}" for i in range(n_cat)
    ]
    n_sub = np.minimum(1 + rng.poisson(max(cfg.subcategories_per_category - 1, 0), n_cat), 12)
    w.sub_category = np.repeat(np.arange(n_cat), n_sub)
    names = pseudo_words(rng, int(n_sub.sum()), set())
    w.subcategories = [
        f"{w.categories[c]}{name}" for c, name in zip(w.sub_category, names, strict=True)
    ]
    cat_center = random_units(rng, n_cat, cfg.latent_dim)
    noise = random_units(rng, len(w.sub_category), cfg.latent_dim)
    w.sub_center = unit(cat_center[w.sub_category] + cfg.subcategory_spread * noise)
    w.category_cdf = zipf_cdf(n_cat, cfg.category_zipf)


def build_words(w: World) -> None:
    cfg, rng = w.cfg, stream(w.seed, "words")
    taken = set(FUNCTION_WORDS) | set(NEGATIONS) | set(INTENSIFIERS)
    common = list(FUNCTION_WORDS) + pseudo_words(rng, cfg.common_words - len(FUNCTION_WORDS), taken)
    modifiers = list(NEGATIONS) + list(INTENSIFIERS)
    n_sub, per = len(w.subcategories), cfg.topical_words_per_subcategory
    topical = pseudo_words(rng, n_sub * per, taken)
    w.words = common + modifiers + topical
    w.first_topical = len(common) + len(modifiers)
    w.common_cdf = zipf_cdf(len(common), 1.0)
    for i in range(len(modifiers)):
        factor = cfg.negation_factor if i < len(NEGATIONS) else cfg.intensifier_factor
        w.modifier_factor[len(common) + i] = factor
    w.word_vec = np.zeros((len(w.words), cfg.latent_dim))
    subs = np.repeat(np.arange(n_sub), per)
    noise = random_units(rng, len(subs), cfg.latent_dim)
    w.word_vec[w.first_topical :] = unit(w.sub_center[subs] + cfg.word_spread * noise)


def build_entities(w: World) -> None:
    cfg, rng = w.cfg, stream(w.seed, "entities")
    n_sub, per = len(w.subcategories), cfg.entities_per_subcategory
    n = n_sub * per
    types = rng.choice(len(ENTITY_TYPES), n, p=ENTITY_TYPE_P)
    taken = set(w.words)
    lo_hi = [ENTITY_TYPE_WORDS.get(ENTITY_TYPES[t], (1, 2)) for t in types]
    n_words = np.array([rng.integers(lo, hi + 1) for lo, hi in lo_hi])
    name_words = [x.capitalize() for x in pseudo_words(rng, int(n_words.sum()), taken)]
    starts = lengths_to_offsets(n_words)[:-1]
    qids = rng.choice(np.arange(100, 10_000_000), n, replace=False)
    for i in range(n):
        label_words = name_words[starts[i] : starts[i] + n_words[i]]
        w.entity_label.append(" ".join(label_words))
        w.entity_short.append(label_words[-1])
        w.entity_type.append(ENTITY_TYPES[types[i]])
        w.entity_qid.append(f"Q{qids[i]}")
    subs = np.repeat(np.arange(n_sub), per)
    noise = random_units(rng, n, cfg.latent_dim)
    w.entity_vec = unit(w.sub_center[subs] + cfg.entity_spread * noise)
    # TransE-like 100-d vectors: a fixed random projection of the latent vector, plus noise.
    projection = rng.standard_normal((cfg.latent_dim, ENTITY_DIM)) / np.sqrt(cfg.latent_dim)
    w.entity_embedding = 0.3 * (w.entity_vec @ projection) + 0.05 * rng.standard_normal(
        (n, ENTITY_DIM)
    )
    w.entity_has_row = rng.random(n) >= cfg.entity_missing_share
    rel = stream(w.seed, "relations")
    w.relation_embedding = 0.3 * rel.standard_normal((len(RELATIONS), ENTITY_DIM))


def build_users(w: World) -> None:
    cfg, rng = w.cfg, stream(w.seed, "users")
    u, d = cfg.num_users, cfg.latent_dim
    # interests: categories by popularity, a subcategory in each, Dirichlet weights
    k = np.clip(1 + rng.poisson(max(cfg.interests_mean - 1, 0), u), 1, cfg.interests_max)
    owner = np.repeat(np.arange(u), k)
    cat = draw_from_cdf(w.category_cdf, rng.random(len(owner)))
    sub = subcategory_in(w, cat, rng.random(len(owner)))
    weight = rng.gamma(cfg.interest_concentration, 1.0, len(owner))
    weight /= np.bincount(owner, weights=weight, minlength=u)[owner]
    taste = np.zeros((u, d))
    np.add.at(taste, owner, weight[:, None] * w.sub_center[sub])
    taste += cfg.user_taste_noise * random_units(rng, u, d)
    w.taste = taste.astype(np.float32)
    w.drift = random_units(rng, u, d).astype(np.float32)
    w.user_bias = cfg.user_bias_std * rng.standard_normal(u)
    w.activity = rng.lognormal(0.0, cfg.user_activity_sigma, u)
    w.user_id = [f"U{i}" for i in (rng.permutation(u) + 1).tolist()]
    # split membership: train users first in a random order, then new dev users, new test users
    c = user_counts(cfg)
    order = rng.permutation(u)
    train = order[: c["train"]]
    dev_new = order[c["train"] : c["train"] + c["dev_new"]]
    test_new = order[c["train"] + c["dev_new"] : c["used"]]
    dev_old = rng.choice(train, min(c["dev"] - c["dev_new"], len(train)), replace=False)
    seen = np.concatenate([train, dev_new])
    test_old = rng.choice(seen, min(c["test"] - c["test_new"], len(seen)), replace=False)
    w.split_users = {
        "train": np.sort(train),
        "dev": np.sort(np.concatenate([dev_new, dev_old])),
        "test": np.sort(np.concatenate([test_new, test_old])),
    }
    # history lengths: log-normal with a share of empty histories; only users who appear
    n_hist_news = int(np.searchsorted(w.pub, 0.0, side="left"))
    length = np.clip(
        np.round(rng.lognormal(np.log(cfg.history_len_median), cfg.history_len_sigma, u)),
        1,
        min(cfg.history_max, max(n_hist_news // 2, 0)),
    )
    length[rng.random(u) < cfg.history_empty_share] = 0
    active = np.zeros(u, dtype=bool)
    for users in w.split_users.values():
        active[users] = True
    length = np.where(active, length, 0).astype(np.int64)
    build_histories(w, length, n_hist_news)


def build_histories(w: World, length: np.ndarray, n_hist_news: int) -> None:
    """Each user's clicks in the history window: the h most appealing of h * pool_factor news.

    Candidates are drawn with the same popularity skew as impressions; the Gumbel top-h trick
    then picks h of them without replacement with probability growing with exp(logit), the
    logit being the click model's at the news' publication time (drift included).
    """
    cfg, u = w.cfg, len(length)
    counts = np.zeros(u, dtype=np.int64)
    chunks: list[np.ndarray] = []
    if n_hist_news == 0:
        w.history_offsets, w.history_news = np.zeros(u + 1, np.int64), np.zeros(0, np.int32)
        return
    prob, alias = alias_table(np.exp(cfg.candidate_popularity_skew * w.log_pop[:n_hist_news]))
    for block, lo in enumerate(range(0, u, USER_BLOCK)):
        hi = min(lo + USER_BLOCK, u)
        h = length[lo:hi]
        pool = h * cfg.history_pool_factor
        if pool.sum() == 0:
            continue
        rng = stream(w.seed, "history", block)
        loc = np.repeat(np.arange(hi - lo), pool)
        news = alias_draw(prob, alias, 0, n_hist_news, rng.random((len(loc), 2)))
        user = lo + loc
        latent = w.latent[news]  # [pairs, D]; blocks stay small: big temporaries cost page faults
        taste = np.einsum("ij,ij->i", w.taste[user], latent)
        drift = np.einsum("ij,ij->i", w.drift[user], latent)
        days = w.pub[news] / DAY  # negative: before train starts
        logit = cfg.taste_scale * (taste + cfg.drift_per_day * days * drift)
        logit += cfg.popularity_weight * w.log_pop[news]
        key = logit + rng.gumbel(size=len(loc))
        key[seen_before(loc, news, w.num_news)] = -np.inf
        # sort by user, then by key descending, in one float sort: loc + (0.5 ... 0]
        order = np.argsort(loc + (0.25 - np.arctan(key) / (2 * np.pi)))
        rank = np.arange(len(loc)) - lengths_to_offsets(pool)[:-1][loc[order]]
        keep = order[(rank < h[loc[order]]) & np.isfinite(key[order])]
        # oldest first: news indices follow publication time
        chosen = np.sort(loc[keep].astype(np.int64) * w.num_news + news[keep])
        counts[lo:hi] = np.bincount(chosen // w.num_news, minlength=hi - lo)
        chunks.append((chosen % w.num_news).astype(np.int32))
    w.history_offsets = np.concatenate([[0], np.cumsum(counts)])
    w.history_news = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def build_world(cfg: WorldConfig, seed: int) -> World:
    w = World(cfg=cfg, seed=seed)
    build_topics(w)
    build_words(w)
    build_entities(w)
    build_news(w)
    build_alive(w)
    build_users(w)
    w.click_bias = calibrate_click_bias(w)
    return w
