"""The synthetic MIND world: a documented generative story written out as real MIND files.

MIND cannot be downloaded everywhere and tests must not need it, so this module writes
folders `train/`, `dev/`, `test/` in MIND's own format (news.tsv with entity JSON,
behaviors.tsv, entity_embedding.vec, relation_embedding.vec; test unlabeled as in MIND-large)
and keeps the truth beside them:

    click_probability.tsv   <impression id>\\t<p1 p2 ... pn>   the true click probability of
                            every candidate, in the impression's candidate order (all splits)
    truth.txt               <impression id> [l1,l2,...,ln]   the clicks of the unlabeled test
                            split, in the leaderboard's truth format
    world.json              the config, seed and counts; written last (the folder appears only
                            when everything is written, see `generate_world`)

The story (docs/synthetic_world.md has it at length, with every knob):

1. Topics. Categories (MIND's names) with subcategories; each subcategory has a unit
   direction in a latent space of `latent_dim` dimensions, near its category's direction.
2. Words. Topical words belong to a subcategory and carry a latent vector near its
   direction; common words (real function words, then made-up fillers, Zipf-frequent) carry
   none; *modifiers* (negations "not", "never", ...; intensifiers "very", ...) carry none
   themselves but change the first topical word that follows them within `modifier_reach`
   positions: a negation multiplies its vector by `negation_factor` (-1 flips it), an
   intensifier by `intensifier_factor`. The same words in another order mean something
   else, and what a modifier does depends on the word it reaches.
3. Entities. Each subcategory owns named entities (WikidataIds `Q...`) with a latent vector
   near its direction and a 100-d embedding that is a fixed random projection of it (so
   entity embeddings correlate with topics); a few have no embedding row, as in MIND.
4. News. A category (Zipf-popular), a subcategory, a title (~11.5 words: topical words,
   fillers, modifiers, entity mentions in random order), an abstract (~40 words, same
   subcategory, no modifiers), a publication time, a lifetime (it is shown only while
   alive), a popularity. Its latent vector is a function of its title only: the modified
   topical-word vectors plus the title entities' vectors, normalised, plus a little hidden
   noise (`news_hidden_noise`) that no text model can see.
5. Users. A mixture of interests (subcategories, Dirichlet weights) plus a personal taste
   vector, a drift direction (taste moves by `drift_per_day` per day), a click propensity,
   an activity level (impressions are shared out by it). A history of clicks from the
   `history_days` before training starts, heavy-tailed in length (some empty), identical in
   every split (MIND builds histories from the weeks before its impression logs).
6. Impressions. A time (days of the split, more by day than by night), candidates sampled
   from the news alive at that hour with popularity skew, and for each candidate
       p = sigmoid(click_bias + user_bias + taste_scale * taste(t) . latent
                   + popularity_weight * log_popularity - recency_weight * age_in_days),
   clicks ~ Bernoulli(p); an impression without a click gets one, drawn in proportion to p
   (the stored p stays the truth). `click_bias` is calibrated so labeled impressions average
   `clicks_per_impression` clicks.

Train covers `train_days` from `start_date` (MIND-small: 11/09-11/14/2019), dev the next
`dev_days`, test the next `test_days`. Most dev users never appear in train and many dev news
are published after train ends (cold start), as in MIND.

Everything is vectorised numpy and written in blocks of a fixed number of impressions, each
block with its own random stream derived from (seed, split, block), so the output is
byte-identical for a seed whatever the machine.

Command line: `python -m newsrec.data.synthetic --preset synthetic --seed 0 --out DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from newsrec.data.info import SplitPaths

# Bump whenever the bytes written for a given (config, seed) change: cached worlds are keyed
# by a hash that includes it, so old caches are not mistaken for new ones.
GENERATOR_VERSION = 1

SPLITS = ("train", "dev", "test")
ENTITY_DIM = 100  # MIND's TransE vectors are 100-d
IMPRESSION_BLOCK = 4096  # impressions per random stream and write (fixed: part of the output)
USER_BLOCK = 512  # users per random stream when drawing histories
DEDUP_ROUNDS = 4  # resampling rounds for a candidate drawn twice in one impression

CATEGORY_NAMES = (
    "news", "sports", "finance", "foodanddrink", "lifestyle", "travel", "video", "weather",
    "health", "autos", "tv", "music", "movies", "entertainment", "kids", "middleeast",
    "northamerica", "games",
)  # fmt: skip
# Frequent real words used as fillers (no topical meaning); modifiers are kept out of them.
FUNCTION_WORDS = (
    "the", "a", "of", "to", "in", "for", "on", "with", "and", "at", "by", "from", "as", "is",
    "are", "after", "over", "new", "how", "why", "what", "says", "will", "could", "this",
    "that", "its", "their", "more", "about", "up", "out", "than", "into", "may", "here",
    "first", "just", "you", "your",
)  # fmt: skip
NEGATIONS = ("not", "never", "no", "without")
INTENSIFIERS = ("very", "most", "really", "truly")
ENTITY_TYPES = ("P", "O", "G", "C", "J", "M", "U", "F", "N")
ENTITY_TYPE_P = (0.35, 0.25, 0.2, 0.1, 0.02, 0.02, 0.02, 0.02, 0.02)
ENTITY_TYPE_WORDS = {"P": (2, 2), "O": (1, 3), "G": (1, 1), "C": (1, 2)}  # default (1, 2)
RELATIONS = ("P31", "P17", "P279", "P131", "P106", "P27", "P361", "P150", "P641", "P54")

_ONSETS = (
    "b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n",
    "p", "pl", "pr", "qu", "r", "s", "sh", "sl", "st", "t", "th", "tr", "v", "w", "z",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "ie")
_CODAS = ["", "", "n", "r", "s", "l", "m", "nd", "st", "rt", "x", "ck"]

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the synthetic world. The defaults are the `synthetic` preset."""

    # --- sizes ---
    num_news: int = 3_000  # news in the whole world (histories' past news included)
    num_users: int = 5_000  # user population; each split draws its users from it
    train_impressions: int = 10_000
    dev_impressions: int = 3_000
    test_impressions: int = 3_000  # unlabeled in behaviors.tsv; clicks in truth.txt
    candidates_mean: float = 25.0  # mean candidates per impression (MIND: ~37)
    candidates_sigma: float = 0.8  # log-normal spread of the candidate count (heavy tail)
    candidates_max: int = 300  # MIND's longest impressions hold ~300 candidates
    clicks_per_impression: float = 2.0  # target mean clicks per impression (MIND-small: ~1.5)
    # --- time (seconds never matter: days and hours do) ---
    start_date: str = "2019-11-09"  # first train day (MIND-small train: 11/09-11/14/2019)
    train_days: int = 6
    dev_days: int = 1  # dev follows train
    test_days: int = 1  # test follows dev
    history_days: int = 28  # histories come from the 4 weeks before train (as MIND's)
    history_news_share: float = 0.5  # share of news published in the history window
    news_lifetime_days: float = 2.0  # mean time a news stays a possible candidate
    news_lifetime_sigma: float = 0.5  # log-normal spread of the lifetime
    # --- topics ---
    num_categories: int = 18  # MIND has 18 in MIND-small (20 in full MIND)
    subcategories_per_category: float = 4.0  # mean; each category has >= 1
    category_zipf: float = 1.0  # category popularity ~ 1 / rank**category_zipf
    latent_dim: int = 32  # dimension of the latent space of topics, words, news, users
    subcategory_spread: float = 1.0  # distance of a subcategory's direction from its category's
    # --- words and titles ---
    topical_words_per_subcategory: int = 15  # scale with the corpus (Heaps' law)
    word_spread: float = 0.7  # distance of a topical word's vector from its subcategory's
    common_words: int = 300  # fillers (the function words first, then made-up words)
    title_words_mean: float = 11.5  # MIND: 11.52
    title_words_std: float = 3.0
    abstract_words_mean: float = 40.0  # MIND: 43 (no abstract in some news)
    abstract_words_std: float = 12.0
    abstract_empty_share: float = 0.05
    topical_share: float = 0.35  # share of title/abstract words that are topical
    offtopic_word_share: float = 0.15  # topical words taken from a sibling subcategory
    modifier_rate: float = 0.8  # mean modifiers per title (Poisson, at most 3)
    modifier_reach: int = 4  # a modifier acts on the 1st topical word <= this many words after it
    negation_share: float = 0.5  # share of modifiers that are negations (else intensifiers)
    negation_factor: float = -1.0  # a negated word's vector is multiplied by this (-1: flipped)
    intensifier_factor: float = 2.0  # an intensified word's vector is multiplied by this
    # --- entities ---
    entities_per_subcategory: int = 20
    entity_spread: float = 0.7  # distance of an entity's vector from its subcategory's
    title_entities_mean: float = 0.8  # mean entity mentions per title (Poisson, at most 2)
    abstract_entities_mean: float = 1.5  # mean entity mentions per abstract (at most 4)
    entity_weight: float = 1.0  # weight of a title entity in the news latent vector
    entity_missing_share: float = 0.03  # entities without a row in entity_embedding.vec
    # --- news latent and popularity ---
    news_hidden_noise: float = 0.2  # latent noise no text can reveal (norm, vs 1 for the text)
    popularity_sigma: float = 1.0  # log-popularity ~ Normal(0, popularity_sigma)
    candidate_popularity_skew: float = 1.0  # candidates drawn ~ popularity**skew (0: uniform)
    # --- users ---
    train_user_share: float = 0.6  # share of the population with train impressions
    dev_user_share: float = 0.3  # share of the population with dev impressions
    dev_new_user_share: float = 0.8  # share of dev users never in train (MIND-small: ~0.88)
    test_user_share: float = 0.3
    test_new_user_share: float = 0.5  # share of test users in neither train nor dev
    user_activity_sigma: float = 1.0  # impressions per user ~ log-normal activity
    interests_mean: float = 2.5  # mean interests (subcategories) per user, >= 1
    interests_max: int = 6
    interest_concentration: float = 1.0  # Dirichlet alpha of the interest weights
    user_taste_noise: float = 0.5  # norm of the personal taste part (interests have ~1)
    user_bias_std: float = 0.5  # per-user click propensity (shifts all of a user's logits)
    drift_per_day: float = 0.01  # taste moves this far per day along a personal direction
    history_len_median: float = 15.0  # history lengths ~ log-normal (heavy tail)
    history_len_sigma: float = 1.0
    history_empty_share: float = 0.03  # users with an empty history
    history_max: int = 300
    history_pool_factor: int = 10  # h history clicks are the best of h * this drawn news
    # --- click model ---
    taste_scale: float = 4.0  # weight of taste . latent in the click logit
    popularity_weight: float = 0.5  # weight of log-popularity in the click logit
    recency_weight: float = 0.3  # logit lost per day of a news' age

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and value < 1:
                problems.append(f"{f.name} must be >= 1 (got {value})")
            if f.name.endswith("_share") and not 0.0 <= value <= 1.0:
                problems.append(f"{f.name} must be in [0, 1] (got {value})")
        if self.candidates_mean < 2:
            problems.append(f"candidates_mean must be >= 2 (got {self.candidates_mean})")
        if not 1.0 <= self.clicks_per_impression < self.candidates_mean:
            problems.append("clicks_per_impression must be in [1, candidates_mean)")
        if self.common_words < len(FUNCTION_WORDS):
            problems.append(f"common_words must be >= {len(FUNCTION_WORDS)}")
        try:
            np.datetime64(self.start_date, "D")
        except ValueError:
            problems.append(f"start_date must be YYYY-MM-DD (got {self.start_date!r})")
        counts = _user_counts(self)
        if counts["used"] > self.num_users:
            problems.append(
                f"the split user shares need {counts['used']} distinct users but num_users is "
                f"{self.num_users}: raise num_users or lower the *_user_share knobs"
            )
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))

    def digest(self) -> str:
        """A short hash of every knob and the generator version (names cached worlds)."""
        text = json.dumps({"generator_version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _user_counts(cfg: WorldConfig) -> dict[str, int]:
    """How many users each split has and how many of them are new (see WorldConfig)."""
    train = max(1, round(cfg.train_user_share * cfg.num_users))
    dev = max(1, round(cfg.dev_user_share * cfg.num_users))
    test = max(1, round(cfg.test_user_share * cfg.num_users))
    dev_new = round(cfg.dev_new_user_share * dev)
    test_new = round(cfg.test_new_user_share * test)
    return {
        "train": train,
        "dev": dev,
        "test": test,
        "dev_new": dev_new,
        "test_new": test_new,
        "used": train + dev_new + test_new,
    }


PRESETS: dict[str, WorldConfig] = {
    # For tests: generated in about a second.
    "synthetic_tiny": WorldConfig(
        num_news=400,
        num_users=600,
        train_impressions=1_000,
        dev_impressions=400,
        test_impressions=400,
        candidates_mean=15.0,
        clicks_per_impression=1.5,
        num_categories=8,
        subcategories_per_category=3.0,
        topical_words_per_subcategory=8,
        common_words=80,
        entities_per_subcategory=6,
        history_len_median=8.0,
        history_max=60,
        train_days=3,
        history_days=14,
        news_lifetime_days=3.0,
    ),
    # The product's default: NRMS at paper sizes trains (3 epochs of ~10k samples) and tests
    # on it within 5 minutes on a 2-core CPU. Sized down from the WorldConfig defaults (3k
    # news, 10k train impressions), which took ~2 minutes an epoch there.
    "synthetic": WorldConfig(
        num_news=1_500,
        num_users=2_500,
        train_impressions=6_000,
        dev_impressions=2_000,
        test_impressions=2_000,
    ),
    # MIND-small's counts (~51k train / ~42k dev news rows, 50k users per split, 94k in all).
    "synthetic_small": WorldConfig(
        num_news=58_000,
        num_users=100_000,
        train_impressions=157_000,
        dev_impressions=73_000,
        test_impressions=10_000,
        candidates_mean=37.0,
        clicks_per_impression=1.5,
        train_user_share=0.5,
        dev_user_share=0.5,
        dev_new_user_share=0.88,
        test_user_share=0.06,
        test_new_user_share=1.0,
        history_news_share=0.66,
        topical_words_per_subcategory=150,
        common_words=1_000,
        entities_per_subcategory=300,
        history_len_median=20.0,
        history_max=500,
    ),
    # MIND-large's counts (train 2.23M impressions / 711k users / 101k news; dev 376k;
    # test 2.37M unlabeled impressions over a week, as MIND-large's test).
    "synthetic_large": WorldConfig(
        num_news=175_000,
        num_users=1_000_000,
        train_impressions=2_232_748,
        dev_impressions=376_471,
        test_impressions=2_370_727,
        candidates_mean=37.0,
        clicks_per_impression=1.5,
        test_days=7,
        train_user_share=0.711,
        dev_user_share=0.256,
        dev_new_user_share=0.2,
        test_user_share=0.702,
        test_new_user_share=0.33,
        history_news_share=0.25,
        topical_words_per_subcategory=300,
        common_words=2_000,
        entities_per_subcategory=600,
        history_len_median=20.0,
        history_max=500,
    ),
}


# ---------------------------------------------------------------------------------------------
# Random streams and small helpers
# ---------------------------------------------------------------------------------------------

# One independent stream per purpose (and per block), so adding or resizing one part never
# shifts the draws of another.
_STREAM = {
    "topics": 1,
    "words": 2,
    "entities": 3,
    "news": 4,
    "users": 5,
    "history": 6,
    "calibration": 7,
    "relations": 8,
    "train": 10,
    "dev": 11,
    "test": 12,
}


def _rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM[stream], *index]))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def _random_units(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return _unit(rng.standard_normal((n, d)))


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(w) / w.sum()


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: indices into `cdf` for uniforms `u` in [0, 1)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _pseudo_words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """`n` new pronounceable made-up words (2-3 syllables), none of them in `taken`."""
    out: list[str] = []
    while len(out) < n:
        m = 2 * (n - len(out)) + 16
        syll = rng.integers(2, 4, m)
        on = rng.integers(0, len(_ONSETS), (m, 3))
        vo = rng.integers(0, len(_VOWELS), (m, 3))
        co = rng.integers(0, len(_CODAS), m)
        for i in range(m):
            parts = [_ONSETS[on[i, j]] + _VOWELS[vo[i, j]] for j in range(syll[i])]
            word = "".join(parts) + _CODAS[co[i]]
            if word not in taken and len(out) < n:
                taken.add(word)
                out.append(word)
    return out


def _alias_table(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table: O(1) draws from a discrete distribution (see `_alias_draw`).

    Binary search in a long cdf costs a cache miss per step; this costs two lookups.
    """
    n = len(weight)
    scaled = (weight * (n / weight.sum())).tolist()
    prob, alias = [1.0] * n, list(range(n))
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        prob[lo], alias[lo] = scaled[lo], hi
        scaled[hi] += scaled[lo] - 1.0
        (small if scaled[hi] < 1.0 else large).append(hi)
    return np.array(prob), np.array(alias, dtype=np.int64)


def _alias_draw(
    prob: np.ndarray, alias: np.ndarray, start: np.ndarray, size: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Draws from alias tables stored back to back: table k holds rows start[k]:start[k]+size[k].

    `u` holds two uniforms per draw, shape [n, 2]; `alias` holds row numbers (global).
    """
    row = start + np.minimum((u[:, 0] * size).astype(np.int64), size - 1)
    return np.where(u[:, 1] < prob[row], row, alias[row])


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _duplicates(group: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """True for every (group, item) pair already seen earlier in the arrays."""
    key = group.astype(np.int64) * num_items + item
    order = np.argsort(key, kind="stable")
    dup = np.zeros(len(key), dtype=bool)
    dup[order[1:]] = key[order[1:]] == key[order[:-1]]
    return dup


# ---------------------------------------------------------------------------------------------
# The world: topics, words, entities, news, users (everything but the impressions)
# ---------------------------------------------------------------------------------------------


@dataclass
class _World:
    cfg: WorldConfig
    seed: int
    # topics
    categories: list[str] = field(default_factory=list)
    subcategories: list[str] = field(default_factory=list)
    sub_category: np.ndarray = None  # [S] category of each subcategory
    sub_center: np.ndarray = None  # [S, D]
    category_cdf: np.ndarray = None  # [C]
    # words: common words, then modifiers, then topical words grouped by subcategory
    words: list[str] = field(default_factory=list)
    word_vec: np.ndarray = None  # [W, D], zero for common words and modifiers
    common_cdf: np.ndarray = None
    modifier_factor: dict[int, float] = field(default_factory=dict)  # word id -> factor
    first_topical: int = 0
    # entities, grouped by subcategory
    entity_qid: list[str] = field(default_factory=list)
    entity_label: list[str] = field(default_factory=list)
    entity_type: list[str] = field(default_factory=list)
    entity_short: list[str] = field(default_factory=list)  # a shorter surface form
    entity_vec: np.ndarray = None  # [E, D]
    entity_embedding: np.ndarray = None  # [E, 100]
    entity_has_row: np.ndarray = None  # [E] bool
    relation_embedding: np.ndarray = None  # [len(RELATIONS), 100]
    # news, in publication order
    news_id: list[str] = field(default_factory=list)
    news_line: list[str] = field(default_factory=list)  # the news.tsv row, without newline
    pub: np.ndarray = None  # [N] seconds from train start (negative: history window)
    end: np.ndarray = None  # [N] end of life
    log_pop: np.ndarray = None  # [N]
    latent: np.ndarray = None  # [N, D] float32, unit norm
    news_entities: list[list[int]] = field(default_factory=list)  # entity ids per news
    title_words: int = 0  # total title words (statistics)
    # users
    user_id: list[str] = field(default_factory=list)
    taste: np.ndarray = None  # [U, D] float32, at train start
    drift: np.ndarray = None  # [U, D] float32, unit direction
    user_bias: np.ndarray = None  # [U]
    activity: np.ndarray = None  # [U]
    split_users: dict[str, np.ndarray] = field(default_factory=dict)
    history_offsets: np.ndarray = None  # [U + 1]
    history_news: np.ndarray = None  # flat, oldest first per user
    # time buckets (hours): the news alive at the start of each hour, with alias tables
    alive_start: np.ndarray = None  # [hours + 1] offsets into alive_news
    alive_news: np.ndarray = None
    alive_prob: np.ndarray = None
    alive_alias: np.ndarray = None
    click_bias: float = 0.0

    @property
    def num_news(self) -> int:
        return len(self.news_id)

    def split_window(self, split: str) -> tuple[float, float]:
        c = self.cfg
        start = {"train": 0, "dev": c.train_days, "test": c.train_days + c.dev_days}[split]
        days = {"train": c.train_days, "dev": c.dev_days, "test": c.test_days}[split]
        return start * DAY, (start + days) * DAY


def _build_topics(w: _World) -> None:
    cfg, rng = w.cfg, _rng(w.seed, "topics")
    n_cat = cfg.num_categories
    w.categories = [
        CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"topic{i}" for i in range(n_cat)
    ]
    n_sub = np.minimum(1 + rng.poisson(max(cfg.subcategories_per_category - 1, 0), n_cat), 12)
    w.sub_category = np.repeat(np.arange(n_cat), n_sub)
    names = _pseudo_words(rng, int(n_sub.sum()), set())
    w.subcategories = [
        f"{w.categories[c]}{name}" for c, name in zip(w.sub_category, names, strict=True)
    ]
    cat_center = _random_units(rng, n_cat, cfg.latent_dim)
    noise = _random_units(rng, len(w.sub_category), cfg.latent_dim)
    w.sub_center = _unit(cat_center[w.sub_category] + cfg.subcategory_spread * noise)
    w.category_cdf = _zipf_cdf(n_cat, cfg.category_zipf)


def _build_words(w: _World) -> None:
    cfg, rng = w.cfg, _rng(w.seed, "words")
    taken = set(FUNCTION_WORDS) | set(NEGATIONS) | set(INTENSIFIERS)
    common = list(FUNCTION_WORDS) + _pseudo_words(
        rng, cfg.common_words - len(FUNCTION_WORDS), taken
    )
    modifiers = list(NEGATIONS) + list(INTENSIFIERS)
    n_sub, per = len(w.subcategories), cfg.topical_words_per_subcategory
    topical = _pseudo_words(rng, n_sub * per, taken)
    w.words = common + modifiers + topical
    w.first_topical = len(common) + len(modifiers)
    w.common_cdf = _zipf_cdf(len(common), 1.0)
    for i in range(len(modifiers)):
        factor = cfg.negation_factor if i < len(NEGATIONS) else cfg.intensifier_factor
        w.modifier_factor[len(common) + i] = factor
    w.word_vec = np.zeros((len(w.words), cfg.latent_dim))
    subs = np.repeat(np.arange(n_sub), per)
    noise = _random_units(rng, len(subs), cfg.latent_dim)
    w.word_vec[w.first_topical :] = _unit(w.sub_center[subs] + cfg.word_spread * noise)


def _build_entities(w: _World) -> None:
    cfg, rng = w.cfg, _rng(w.seed, "entities")
    n_sub, per = len(w.subcategories), cfg.entities_per_subcategory
    n = n_sub * per
    types = rng.choice(len(ENTITY_TYPES), n, p=ENTITY_TYPE_P)
    taken = set(w.words)
    lo_hi = [ENTITY_TYPE_WORDS.get(ENTITY_TYPES[t], (1, 2)) for t in types]
    n_words = np.array([rng.integers(lo, hi + 1) for lo, hi in lo_hi])
    name_words = [x.capitalize() for x in _pseudo_words(rng, int(n_words.sum()), taken)]
    starts = _segment_starts(n_words)
    qids = rng.choice(np.arange(100, 10_000_000), n, replace=False)
    for i in range(n):
        label_words = name_words[starts[i] : starts[i] + n_words[i]]
        w.entity_label.append(" ".join(label_words))
        w.entity_short.append(label_words[-1])
        w.entity_type.append(ENTITY_TYPES[types[i]])
        w.entity_qid.append(f"Q{qids[i]}")
    subs = np.repeat(np.arange(n_sub), per)
    noise = _random_units(rng, n, cfg.latent_dim)
    w.entity_vec = _unit(w.sub_center[subs] + cfg.entity_spread * noise)
    # TransE-like 100-d vectors: a fixed random projection of the latent vector, plus noise.
    projection = rng.standard_normal((cfg.latent_dim, ENTITY_DIM)) / np.sqrt(cfg.latent_dim)
    w.entity_embedding = 0.3 * (w.entity_vec @ projection) + 0.05 * rng.standard_normal(
        (n, ENTITY_DIM)
    )
    w.entity_has_row = rng.random(n) >= cfg.entity_missing_share
    rel = _rng(w.seed, "relations")
    w.relation_embedding = 0.3 * rel.standard_normal((len(RELATIONS), ENTITY_DIM))


def _subcategory_in(w: _World, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A uniformly chosen subcategory of each category (`u`: uniforms in [0, 1))."""
    first = np.searchsorted(w.sub_category, category, side="left")
    count = np.searchsorted(w.sub_category, category, side="right") - first
    return first + (u * count).astype(np.int64)


def _entity_json(mentions: list[tuple[int, int, str, float]], w: _World) -> str:
    """MIND's entity column: one object per entity, with every offset and surface form."""
    objects: dict[int, dict] = {}
    for entity, offset, surface, confidence in mentions:
        obj = objects.get(entity)
        if obj is None:
            obj = objects[entity] = {
                "Label": w.entity_label[entity],
                "Type": w.entity_type[entity],
                "WikidataId": w.entity_qid[entity],
                "Confidence": confidence,
                "OccurrenceOffsets": [],
                "SurfaceForms": [],
            }
        obj["OccurrenceOffsets"].append(offset)
        obj["SurfaceForms"].append(surface)
    return json.dumps(list(objects.values()))


def _draw_units(
    w: _World,
    rng: np.random.Generator,
    sub: np.ndarray,
    length: np.ndarray,
    n_mod: np.ndarray,
    n_ent: np.ndarray,
) -> tuple[list[list[tuple[int, int]]], np.ndarray]:
    """The words of a text per news, in order, as (kind, id) units.

    kind 0: a word id (topical, common or modifier), 1: an entity id (full surface form),
    2: an entity id (short surface form). Returns the units and the word count per news.
    """
    cfg, n = w.cfg, len(sub)
    per_sub = cfg.topical_words_per_subcategory
    n_top = np.clip(rng.binomial(np.maximum(length, 1), cfg.topical_share), 1, None)
    # topical words: the news' own subcategory, or now and then a sibling of it
    news_of_top = np.repeat(np.arange(n), n_top)
    top_sub = sub[news_of_top]
    sibling = rng.random(len(top_sub)) < cfg.offtopic_word_share
    other = _subcategory_in(w, w.sub_category[top_sub], rng.random(len(top_sub)))
    top_sub = np.where(sibling, other, top_sub)
    top_word = w.first_topical + top_sub * per_sub + rng.integers(0, per_sub, len(top_sub))
    # modifiers
    news_of_mod = np.repeat(np.arange(n), n_mod)
    is_neg = rng.random(len(news_of_mod)) < cfg.negation_share
    first_mod = w.first_topical - len(NEGATIONS) - len(INTENSIFIERS)
    mod_word = np.where(
        is_neg,
        first_mod + rng.integers(0, len(NEGATIONS), len(news_of_mod)),
        first_mod + len(NEGATIONS) + rng.integers(0, len(INTENSIFIERS), len(news_of_mod)),
    )
    # entities of the news' subcategory, Zipf-popular within it
    news_of_ent = np.repeat(np.arange(n), n_ent)
    ent_cdf = _zipf_cdf(cfg.entities_per_subcategory, 1.0)
    ent = sub[news_of_ent] * cfg.entities_per_subcategory + _draw(
        ent_cdf, rng.random(len(news_of_ent))
    )
    short = (rng.random(len(ent)) < 0.3) & np.array(
        [w.entity_label[e] != w.entity_short[e] for e in ent], dtype=bool
    )
    ent_words = np.array([len(w.entity_label[e].split()) for e in ent], dtype=np.int64)
    ent_words = np.where(short, 1, ent_words)
    used = n_top + n_mod + np.bincount(news_of_ent, weights=ent_words, minlength=n).astype(int)
    n_fill = np.maximum(length - used, 0)
    news_of_fill = np.repeat(np.arange(n), n_fill)
    fill_word = _draw(w.common_cdf, rng.random(len(news_of_fill)))
    # all units, shuffled within each news
    news_of = np.concatenate([news_of_top, news_of_mod, news_of_ent, news_of_fill])
    kind = np.concatenate(
        [
            np.zeros(len(top_word), np.int64),
            np.zeros(len(mod_word), np.int64),
            np.where(short, 2, 1),
            np.zeros(len(fill_word), np.int64),
        ]
    )
    ident = np.concatenate([top_word, mod_word, ent, fill_word])
    order = np.lexsort((rng.random(len(news_of)), news_of))
    counts = np.bincount(news_of, minlength=n)
    pairs = list(zip(kind[order].tolist(), ident[order].tolist(), strict=True))
    starts = _segment_starts(counts).tolist()
    units = [pairs[s : s + c] for s, c in zip(starts, counts.tolist(), strict=True)]
    return units, used + n_fill


def _render(
    w: _World, units: list[tuple[int, int]], confidences: Iterator[float], title: bool
) -> tuple[str, str, list[tuple[int, float]]]:
    """Text, entity JSON and (topical word, factor) terms of one title or abstract."""
    cfg, factors = w.cfg, w.modifier_factor
    tokens: list[str] = []
    mentions: list[tuple[int, int, str, float]] = []
    offset = 0
    topical: list[tuple[int, float]] = []  # (word id, factor)
    pending: list[tuple[int, float]] = []  # modifiers waiting for a word: (position, factor)
    position = 0
    for kind, ident in units:
        if kind == 0:
            text = w.words[ident]
            if ident in factors:
                pending.append((position, factors[ident]))
            elif ident >= w.first_topical:
                # each pending modifier within reach acts on this word (the first topical
                # word after it); those out of reach can reach no later word either
                factor = 1.0
                for mod_pos, mod_factor in pending:
                    if position - mod_pos <= cfg.modifier_reach:
                        factor *= mod_factor
                pending = []
                topical.append((ident, factor))
            position += 1
        else:
            text = w.entity_label[ident] if kind == 1 else w.entity_short[ident]
            mentions.append((ident, offset, text, next(confidences)))
            position += text.count(" ") + 1
        tokens.append(text)
        offset += len(text) + 1
    if title and tokens and units[0][0] == 0:
        tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    text = " ".join(tokens)
    if not title and text:
        text += "."  # an abstract is a sentence
    return text, _entity_json(mentions, w), topical


def _build_news(w: _World) -> None:
    cfg, rng = w.cfg, _rng(w.seed, "news")
    n = cfg.num_news
    # publication times: a share in the history window, the rest over the impression days
    n_hist = round(cfg.history_news_share * n)
    impression_days = cfg.train_days + cfg.dev_days + cfg.test_days
    pub = np.concatenate(
        [
            -cfg.history_days * DAY * rng.random(n_hist),
            impression_days * DAY * rng.random(n - n_hist),
        ]
    )
    pub = np.sort(np.floor(pub))
    life_mu = np.log(cfg.news_lifetime_days) - cfg.news_lifetime_sigma**2 / 2
    w.pub = pub
    w.end = pub + DAY * rng.lognormal(life_mu, cfg.news_lifetime_sigma, n)
    w.log_pop = cfg.popularity_sigma * rng.standard_normal(n)
    cat = _draw(w.category_cdf, rng.random(n))
    sub = _subcategory_in(w, cat, rng.random(n))

    title_len = np.clip(np.round(rng.normal(cfg.title_words_mean, cfg.title_words_std, n)), 3, 40)
    title_mod = np.minimum(rng.poisson(cfg.modifier_rate, n), 3)
    title_ent = np.minimum(rng.poisson(cfg.title_entities_mean, n), 2)
    title_units, title_words = _draw_units(
        w, rng, sub, title_len.astype(np.int64), title_mod, title_ent
    )
    abs_len = np.clip(
        np.round(rng.normal(cfg.abstract_words_mean, cfg.abstract_words_std, n)), 5, 150
    )
    abs_len = np.where(rng.random(n) < cfg.abstract_empty_share, 0, abs_len).astype(np.int64)
    abs_ent = np.where(abs_len > 0, np.minimum(rng.poisson(cfg.abstract_entities_mean, n), 4), 0)
    abs_units, _ = _draw_units(w, rng, sub, abs_len, np.zeros(n, np.int64), abs_ent)
    for i in range(n):
        if abs_len[i] == 0:
            abs_units[i] = []
    n_conf = int(title_ent.sum() + abs_ent.sum()) + 1
    conf = np.where(rng.random(n_conf) < 0.5, 1.0, np.round(rng.uniform(0.5, 1.0, n_conf), 3))
    confidences = iter(conf.tolist())
    ids = rng.permutation(n) + 1
    url_codes = rng.integers(36**5, 36**6, n)
    hidden = cfg.news_hidden_noise * _random_units(rng, n, cfg.latent_dim)

    text_vec = np.zeros((n, cfg.latent_dim))
    term_news, term_word, term_factor = [], [], []
    title_entity_news, title_entity = [], []
    for i in range(n):
        title, title_json, terms = _render(w, title_units[i], confidences, title=True)
        abstract, abstract_json, _ = _render(w, abs_units[i], confidences, title=False)
        for word, factor in terms:
            term_news.append(i)
            term_word.append(word)
            term_factor.append(factor)
        t_ents = [ident for kind, ident in title_units[i] if kind != 0]
        title_entity_news.extend([i] * len(t_ents))
        title_entity.extend(t_ents)
        a_ents = [ident for kind, ident in abs_units[i] if kind != 0]
        w.news_entities.append(sorted(set(t_ents + a_ents)))
        nid = f"N{ids[i]}"
        w.news_id.append(nid)
        url = f"https://assets.msn.com/labs/mind/AA{np.base_repr(url_codes[i], 36)}.html"
        w.news_line.append(
            f"{nid}\t{w.categories[cat[i]]}\t{w.subcategories[sub[i]]}\t{title}\t{abstract}"
            f"\t{url}\t{title_json}\t{abstract_json}"
        )
    w.title_words = int(title_words.sum())
    # latent vector: modified topical words + title entities, normalised, + hidden noise
    np.add.at(
        text_vec,
        np.array(term_news, np.int64),
        np.array(term_factor)[:, None] * w.word_vec[np.array(term_word, np.int64)],
    )
    if title_entity:
        np.add.at(
            text_vec,
            np.array(title_entity_news, np.int64),
            cfg.entity_weight * w.entity_vec[np.array(title_entity, np.int64)],
        )
    w.latent = _unit(_unit(text_vec) + hidden).astype(np.float32)


def _build_alive(w: _World) -> None:
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
        prob, alias = _alias_table(weight[alive])
        news.append(alive)
        probs.append(prob)
        aliases.append(alias + starts[-1])
        starts.append(starts[-1] + len(alive))
    w.alive_start = np.array(starts)
    w.alive_news = np.concatenate(news)
    w.alive_prob = np.concatenate(probs)
    w.alive_alias = np.concatenate(aliases)


def _build_users(w: _World) -> None:
    cfg, rng = w.cfg, _rng(w.seed, "users")
    u, d = cfg.num_users, cfg.latent_dim
    # interests: categories by popularity, a subcategory in each, Dirichlet weights
    k = np.clip(1 + rng.poisson(max(cfg.interests_mean - 1, 0), u), 1, cfg.interests_max)
    owner = np.repeat(np.arange(u), k)
    cat = _draw(w.category_cdf, rng.random(len(owner)))
    sub = _subcategory_in(w, cat, rng.random(len(owner)))
    weight = rng.gamma(cfg.interest_concentration, 1.0, len(owner))
    weight /= np.bincount(owner, weights=weight, minlength=u)[owner]
    taste = np.zeros((u, d))
    np.add.at(taste, owner, weight[:, None] * w.sub_center[sub])
    taste += cfg.user_taste_noise * _random_units(rng, u, d)
    w.taste = taste.astype(np.float32)
    w.drift = _random_units(rng, u, d).astype(np.float32)
    w.user_bias = cfg.user_bias_std * rng.standard_normal(u)
    w.activity = rng.lognormal(0.0, cfg.user_activity_sigma, u)
    w.user_id = [f"U{i}" for i in (rng.permutation(u) + 1).tolist()]
    # split membership: train users first in a random order, then new dev users, new test users
    c = _user_counts(cfg)
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
    _build_histories(w, length, n_hist_news)


def _build_histories(w: _World, length: np.ndarray, n_hist_news: int) -> None:
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
    prob, alias = _alias_table(np.exp(cfg.candidate_popularity_skew * w.log_pop[:n_hist_news]))
    for block, lo in enumerate(range(0, u, USER_BLOCK)):
        hi = min(lo + USER_BLOCK, u)
        h = length[lo:hi]
        pool = h * cfg.history_pool_factor
        if pool.sum() == 0:
            continue
        rng = _rng(w.seed, "history", block)
        loc = np.repeat(np.arange(hi - lo), pool)
        news = _alias_draw(prob, alias, 0, n_hist_news, rng.random((len(loc), 2)))
        user = lo + loc
        latent = w.latent[news]  # [pairs, D]; blocks stay small: big temporaries cost page faults
        taste = np.einsum("ij,ij->i", w.taste[user], latent)
        drift = np.einsum("ij,ij->i", w.drift[user], latent)
        days = w.pub[news] / DAY  # negative: before train starts
        logit = cfg.taste_scale * (taste + cfg.drift_per_day * days * drift)
        logit += cfg.popularity_weight * w.log_pop[news]
        key = logit + rng.gumbel(size=len(loc))
        key[_duplicates(loc, news, w.num_news)] = -np.inf
        # sort by user, then by key descending, in one float sort: loc + (0.5 ... 0]
        order = np.argsort(loc + (0.25 - np.arctan(key) / (2 * np.pi)))
        rank = np.arange(len(loc)) - _segment_starts(pool)[loc[order]]
        keep = order[(rank < h[loc[order]]) & np.isfinite(key[order])]
        # oldest first: news indices follow publication time
        chosen = np.sort(loc[keep].astype(np.int64) * w.num_news + news[keep])
        counts[lo:hi] = np.bincount(chosen // w.num_news, minlength=hi - lo)
        chunks.append((chosen % w.num_news).astype(np.int32))
    w.history_offsets = np.concatenate([[0], np.cumsum(counts)])
    w.history_news = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def _build_world(cfg: WorldConfig, seed: int) -> _World:
    w = _World(cfg=cfg, seed=seed)
    _build_topics(w)
    _build_words(w)
    _build_entities(w)
    _build_news(w)
    _build_alive(w)
    _build_users(w)
    w.click_bias = _calibrate_click_bias(w)
    return w


# ---------------------------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------------------------


def _impression_users_and_times(w: _World, split: str, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Who makes each impression of a split and when (seconds from train start)."""
    rng = _rng(w.seed, split, 0)
    users = w.split_users[split]
    if m >= len(users):
        # every user of the split at least once, the rest shared out by activity
        p = w.activity[users] / w.activity[users].sum()
        extra = users[_draw(np.cumsum(p), rng.random(m - len(users)))]
        who = rng.permutation(np.concatenate([users, extra]))
    else:
        who = rng.choice(users, m, replace=False, p=w.activity[users] / w.activity[users].sum())
    start, stop = w.split_window(split)
    days = int(round((stop - start) / DAY))
    # more impressions by day than by night (peak early afternoon)
    diurnal = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 14) / 24)
    hour = _draw(np.cumsum(diurnal) / diurnal.sum(), rng.random(m))
    t = start + DAY * rng.integers(0, days, m) + HOUR * hour + np.floor(HOUR * rng.random(m))
    return who, t


def _sample_candidates(
    w: _World, users: np.ndarray, times: np.ndarray, rng: np.random.Generator
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
        return w.alive_news[_alias_draw(w.alive_prob, w.alive_alias, start, size, u)]

    news = draw(np.arange(len(loc)))
    for _ in range(DEDUP_ROUNDS):
        dup = _duplicates(loc, news, w.num_news)
        if not dup.any():
            break
        news[dup] = draw(np.flatnonzero(dup))
    keep = ~_duplicates(loc, news, w.num_news)
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


def _calibrate_click_bias(w: _World) -> float:
    """The click_bias giving `clicks_per_impression` on a sample of train impressions."""
    rng = _rng(w.seed, "calibration")
    users = w.split_users["train"]
    m = 2000
    who = users[rng.integers(0, len(users), m)]
    start, stop = w.split_window("train")
    times = np.floor(start + (stop - start) * rng.random(m))
    counts, _, logit = _sample_candidates(w, who, times, rng)
    loc = np.repeat(np.arange(m), counts)
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _expected_clicks(logit, loc, m, mid) < w.cfg.clicks_per_impression:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _draw_clicks(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli(p) clicks; an impression without one gets one drawn in proportion to p."""
    n = len(counts)
    loc = np.repeat(np.arange(n), counts)
    clicked = rng.random(len(p)) < p
    none = np.flatnonzero((np.bincount(loc, weights=clicked, minlength=n) == 0) & (counts > 0))
    if len(none):
        starts = _segment_starts(counts)
        cum = np.cumsum(p)
        before = np.where(starts[none] > 0, cum[np.maximum(starts[none] - 1, 0)], 0.0)
        total = cum[starts[none] + counts[none] - 1] - before
        target = before + rng.random(len(none)) * total
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, starts[none], starts[none] + counts[none] - 1)
        clicked[pos] = True
    return clicked


def _format_times(w: _World, t: np.ndarray) -> list[str]:
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


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


class _Progress:
    """rich.progress when asked for, else nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def task(self, description: str, total: int) -> int | None:
        return self.bar.add_task(description, total=total) if self.bar else None

    def advance(self, task: int | None, amount: int = 1) -> None:
        if self.bar is not None and task is not None:
            self.bar.advance(task, amount)


def _format_floats(values: np.ndarray) -> list[str]:
    return list(map("%.6g".__mod__, values.tolist()))


def _write_split(
    w: _World, split: str, folder: Path, history_text: list[str], progress: _Progress
) -> dict:
    """behaviors.tsv, click_probability.tsv (and truth.txt) of a split, then news and vectors."""
    cfg = w.cfg
    m = {"train": cfg.train_impressions, "dev": cfg.dev_impressions, "test": cfg.test_impressions}[
        split
    ]
    labeled = split != "test"
    folder.mkdir(parents=True)
    who, when = _impression_users_and_times(w, split, m)
    used = np.zeros(w.num_news, dtype=bool)
    for user in w.split_users[split].tolist():
        used[w.history_news[w.history_offsets[user] : w.history_offsets[user + 1]]] = True
    id_label = [f"{nid}-{y}" for nid in w.news_id for y in (0, 1)]
    stats = {"impressions": m, "candidates": 0, "clicks": 0}
    task = progress.task(f"{split:5s} impressions", m)
    names = {"behaviors": "behaviors.tsv", "prob": "click_probability.tsv"}
    if not labeled:
        names["truth"] = "truth.txt"
    with contextlib.ExitStack() as stack:
        files = {
            key: stack.enter_context(_open_write(folder / name)) for key, name in names.items()
        }
        for block, lo in enumerate(range(0, m, IMPRESSION_BLOCK)):
            hi = min(lo + IMPRESSION_BLOCK, m)
            rng = _rng(w.seed, split, block + 1)
            users, times = who[lo:hi], when[lo:hi]
            counts, news, logit = _sample_candidates(w, users, times, rng)
            p = 1.0 / (1.0 + np.exp(-(logit + w.click_bias)))
            clicked = _draw_clicks(counts, p, rng)
            used[news] = True
            stats["candidates"] += len(news)
            stats["clicks"] += int(clicked.sum())
            if labeled:
                cands = [id_label[i] for i in (2 * news + clicked).tolist()]
            else:
                cands = [w.news_id[i] for i in news.tolist()]
                labels = ["1" if c else "0" for c in clicked.tolist()]
            probs = _format_floats(p)
            stamps = _format_times(w, times)
            ends = np.cumsum(counts).tolist()
            behaviors, prob_lines, truth_lines = [], [], []
            start = 0
            for i, (user, end) in enumerate(zip(users.tolist(), ends, strict=True)):
                iid = lo + i + 1
                behaviors.append(
                    f"{iid}\t{w.user_id[user]}\t{stamps[i]}\t{history_text[user]}"
                    f"\t{' '.join(cands[start:end])}\n"
                )
                prob_lines.append(f"{iid}\t{' '.join(probs[start:end])}\n")
                if not labeled:
                    truth_lines.append(f"{iid} [{','.join(labels[start:end])}]\n")
                start = end
            files["behaviors"].write("".join(behaviors))
            files["prob"].write("".join(prob_lines))
            if not labeled:
                files["truth"].write("".join(truth_lines))
            progress.advance(task, hi - lo)
    # news.tsv: every news the split refers to (histories and candidates), as MIND does
    rows = np.flatnonzero(used).tolist()
    with _open_write(folder / "news.tsv") as f:
        f.write("".join(w.news_line[i] + "\n" for i in rows))
    entities = sorted({e for i in rows for e in w.news_entities[i]})
    with _open_write(folder / "entity_embedding.vec") as f:
        for e in entities:
            if w.entity_has_row[e]:
                f.write(w.entity_qid[e] + "\t" + "\t".join(_fixed6(w.entity_embedding[e])) + "\n")
    with _open_write(folder / "relation_embedding.vec") as f:
        for r, vec in zip(RELATIONS, w.relation_embedding, strict=True):
            f.write(r + "\t" + "\t".join(_fixed6(vec)) + "\n")
    stats.update(
        users=int(len(np.unique(who))),
        news=len(rows),
        entities=len(entities),
        first_time=_format_times(w, when.min(keepdims=True))[0],
        last_time=_format_times(w, when.max(keepdims=True))[0],
    )
    return stats


def _open_write(path: Path):
    return open(path, "w", encoding="utf-8", newline="\n")


def _fixed6(vec: np.ndarray) -> list[str]:
    return list(map("%.6f".__mod__, vec.tolist()))


def generate_world(
    out_dir: Path,
    config: WorldConfig,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> None:
    """Write a synthetic world's `train/`, `dev/`, `test/` folders (and world.json) to out_dir.

    Everything is written into a temporary sibling folder that is renamed to `out_dir` only
    when complete, so a killed run leaves nothing that looks finished. An existing non-empty
    `out_dir` is an error unless `overwrite`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass overwrite=True to replace it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.partial-{socket.gethostname()}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with _Progress(progress) as bar:
            task = bar.task("world (news, users, histories)", 1)
            w = _build_world(config, seed)
            history_text = [
                " ".join(w.news_id[j] for j in w.history_news[a:b].tolist())
                for a, b in zip(
                    w.history_offsets[:-1].tolist(), w.history_offsets[1:].tolist(), strict=True
                )
            ]
            bar.advance(task)
            splits = {s: _write_split(w, s, tmp / s, history_text, bar) for s in SPLITS}
        summary = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "config_digest": config.digest(),
            "config": asdict(config),
            "click_bias": round(w.click_bias, 6),
            "words": len(w.words),
            "entities": len(w.entity_qid),
            "mean_title_words": round(w.title_words / w.num_news, 3),
            "splits": splits,
        }
        # world.json last: a folder without it was not finished
        (tmp / "world.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            if overwrite and any(out_dir.iterdir()):
                shutil.rmtree(out_dir)
            else:
                out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete_world(folder: Path) -> bool:
    """True when `folder` holds a finished world (world.json and every split's files)."""
    folder = Path(folder)
    needed = [
        "behaviors.tsv",
        "news.tsv",
        "entity_embedding.vec",
        "relation_embedding.vec",
        "click_probability.tsv",
    ]
    if not (folder / "world.json").is_file():
        return False
    if not all((folder / s / name).is_file() for s in SPLITS for name in needed):
        return False
    return (folder / "test" / "truth.txt").is_file()


def _remove_dead_partials(folder: Path) -> None:
    """Delete temp folders of killed runs for `folder` (this host's, whose process is gone)."""
    prefix = f".{folder.name}.partial-{socket.gethostname()}-"
    if not folder.parent.is_dir():
        return
    for partial in folder.parent.glob(f"{prefix}*"):
        pid = partial.name[len(prefix) :]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


class SyntheticSource:
    """A data source for the datamodule: a synthetic world, generated once and then reused.

    `overrides` are WorldConfig field values that replace the preset's. The world is cached
    under root/synthetic/<preset>-seed<seed>-<hash of the full config>, so a changed knob
    (or a new generator version) gets its own folder.
    """

    def __init__(self, preset: str = "synthetic", seed: int = 0, **overrides) -> None:
        if preset not in PRESETS:
            raise ValueError(
                f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}"
            )
        unknown = set(overrides) - {f for f in WorldConfig.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown WorldConfig fields {sorted(unknown)} for preset {preset!r}")
        self.preset = preset
        self.seed = int(seed)
        self.config = replace(PRESETS[preset], **overrides)

    @property
    def name(self) -> str:
        return f"{self.preset}-seed{self.seed}-{self.config.digest()}"

    def path(self, root: str | Path) -> Path:
        return Path(root) / "synthetic" / self.name

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        folder = self.path(root)
        if not is_complete_world(folder):
            _remove_dead_partials(folder)
            if folder.exists() and not is_complete_world(folder):
                # not to be trusted: left by an interrupted or foreign process
                shutil.rmtree(folder)
            try:
                generate_world(folder, self.config, self.seed, progress=progress)
            except OSError:
                # another process (e.g. another DDP rank) finished the same world first
                if not is_complete_world(folder):
                    raise
        return SplitPaths(
            train=folder / "train", dev=folder / "dev", test=folder / "test", has_truth=True
        )

    def __repr__(self) -> str:
        return f"SyntheticSource(preset={self.preset!r}, seed={self.seed})"


def load_click_probabilities(split_dir: Path) -> dict[int, np.ndarray]:
    """Impression id -> true click probability of each candidate, in behaviors.tsv order."""
    path = Path(split_dir) / "click_probability.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only synthetic worlds have click probabilities")
    out: dict[int, np.ndarray] = {}
    ids: list[int] = []
    counts: list[int] = []
    texts: list[str] = []

    def flush(last_line: int) -> None:
        # parse many lines at once (memory stays bounded on MIND-large-sized worlds)
        try:
            flat = np.fromstring(" ".join(texts), sep=" ")
        except ValueError:
            flat = np.zeros(0)
        if len(flat) != sum(counts):
            first = last_line - len(ids) + 1
            raise ValueError(f"{path}: a value in lines {first}-{last_line} is not a number")
        out.update(zip(ids, np.split(flat, np.cumsum(counts)[:-1]), strict=True))
        ids.clear()
        counts.clear()
        texts.clear()

    line_no = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            iid, sep, values = line.rstrip("\n").partition("\t")
            if not sep or not iid.isdigit():
                raise ValueError(f"{path}:{line_no}: expected '<impression id>\\t<p1 p2 ...>'")
            ids.append(int(iid))
            counts.append(values.count(" ") + 1 if values else 0)
            texts.append(values)
            if len(ids) == 50_000:
                flush(line_no)
        if ids:
            flush(line_no)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m newsrec.data.synthetic",
        description="Write a synthetic MIND-format world (train/dev/test) to a folder.",
    )
    parser.add_argument("--preset", default="synthetic", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="target folder (default: data/synthetic/<preset>-seed<seed>-<hash>)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE",
        help="override WorldConfig fields, e.g. --set num_news=5000",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in WorldConfig.__dataclass_fields__:
            parser.error(f"unknown knob {key!r}")
        kind = type(getattr(PRESETS[args.preset], key))
        overrides[key] = kind(value)
    source = SyntheticSource(args.preset, args.seed, **overrides)
    out = args.out if args.out is not None else source.path("data")
    started = time.perf_counter()
    generate_world(
        out, source.config, args.seed, progress=not args.no_progress, overwrite=args.overwrite
    )
    seconds = time.perf_counter() - started
    summary = json.loads((out / "world.json").read_text())
    print(f"wrote {out} in {seconds:.1f} s (preset {args.preset}, seed {args.seed})")
    total = 0
    for split in SPLITS:
        s = summary["splits"][split]
        size = sum(p.stat().st_size for p in (out / split).iterdir())
        total += size
        print(
            f"  {split:5s} {s['impressions']:>9,} impressions {s['users']:>8,} users "
            f"{s['news']:>7,} news {s['candidates']:>11,} candidates {s['clicks']:>9,} clicks "
            f"{size / 2**20:9.1f} MiB"
        )
    print(f"  total {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
