"""Every knob of the synthetic world (`WorldConfig`) and the named presets (`PRESETS`).

docs/synthetic_world.md explains each knob; the story that uses them is in `world.py`,
`news.py` and `impressions.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from newsrec.constants import DAY  # noqa: F401  (re-exported: the story counts in days)

# Bump whenever the bytes written for a given (config, seed) change: cached worlds are keyed
# by a hash that includes it, so old caches are not mistaken for new ones.
GENERATOR_VERSION = 1

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

ONSETS = (
    "b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n",
    "p", "pl", "pr", "qu", "r", "s", "sh", "sl", "st", "t", "th", "tr", "v", "w", "z",
)  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "ie")
CODAS = ["", "", "n", "r", "s", "l", "m", "nd", "st", "rt", "x", "ck"]

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
        counts = user_counts(self)
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


def user_counts(cfg: WorldConfig) -> dict[str, int]:
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
