"""Presets of the synthetic world in EB-NeRD's layout (`newsrec.data.ebnerd.synthetic`).

The story is the MIND world's (newsrec.data.synthetic, docs/synthetic_world.md), sized and
timed like EB-NeRD (its paper, arXiv 2410.03432, and the toolkit's notebooks): a 7-day train
week from 2023-05-18, a 7-day validation week, a 7-day test week; histories from the 21 days
before each week; ~11.5 in-view articles per impression (ebnerd_small: 11.10 train, 11.97
validation), about one click each (the full dataset: 38.1M clicks over 38.0M impressions),
titles of ~6.6 words and subtitles of ~17 (the descriptive-analysis notebook), long histories
(ebnerd_small: median ~250 clicks, third-party counts). Beside the world's knobs: the
document vectors (a fixed random projection of each article's latent vector plus noise: like
the artifacts, computed from more than the title) and the test set's beyond-accuracy
impressions (one shared in-view list, impression id 0, no clicks).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from newsrec.data.synthetic.config import PRESETS, WorldConfig

WRITER_VERSION = 1  # bump when the files written for a (preset, seed) change


@dataclass(frozen=True)
class EbnerdWorldConfig:
    world: WorldConfig
    document_dim: int = 32  # EB-NeRD's artifacts: 768 (contrastive, BERT, XLM-R), 300 (word2vec)
    document_noise: float = 0.5  # norm of the noise added to a document vector (signal ~0.3)
    beyond_accuracy_impressions: int = 20  # EB-NeRD's test set: 200,000
    beyond_accuracy_candidates: int = 10  # EB-NeRD's test set: 250, the same list for all

    def digest(self) -> str:
        text = json.dumps({"writer": WRITER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


# EB-NeRD's shape on top of a world's sizes.
_EBNERD = dict(
    start_date="2023-05-18",
    train_days=7,
    dev_days=7,
    test_days=7,
    history_days=21,
    candidates_mean=11.5,
    candidates_sigma=0.5,
    candidates_max=100,
    clicks_per_impression=1.05,
    title_words_mean=6.6,
    title_words_std=2.5,
    abstract_words_mean=17.3,
    abstract_words_std=8.6,
    news_lifetime_days=1.5,
    dev_new_user_share=0.2,  # EB-NeRD: 80.85% of validation users are train users
    test_new_user_share=0.2,
)

EBNERD_PRESETS: dict[str, EbnerdWorldConfig] = {
    # For tests: seconds.
    "synthetic_ebnerd_tiny": EbnerdWorldConfig(
        world=replace(
            PRESETS["synthetic_tiny"],
            **{
                **_EBNERD,
                "train_days": 3,
                "dev_days": 2,
                "test_days": 2,
                "history_days": 14,
                "candidates_max": 40,
            },
            num_news=500,
            history_max=40,
        ),
        document_dim=16,
    ),
    # A user's first run: NRMS or NRMSDocVec trains and tests in a few minutes on a CPU.
    "synthetic_ebnerd": EbnerdWorldConfig(
        world=replace(PRESETS["synthetic"], **_EBNERD, num_news=2_500, history_len_median=40.0),
        document_dim=64,
        beyond_accuracy_impressions=200,
        beyond_accuracy_candidates=50,
    ),
    # ebnerd_small's counts: 232,887 train and 244,647 validation impressions, ~20k users,
    # ~21k articles, median history ~250; 768-d document vectors; a 10k-impression test week
    # (the real test set, 13.5M impressions, is shared by all bundle sizes).
    "synthetic_ebnerd_small": EbnerdWorldConfig(
        world=replace(
            PRESETS["synthetic_small"],
            **_EBNERD,
            num_news=21_000,
            num_users=20_000,
            train_impressions=232_887,
            dev_impressions=244_647,
            test_impressions=10_000,
            train_user_share=0.78,
            dev_user_share=0.78,
            test_user_share=0.3,
            history_news_share=0.6,
            history_len_median=250.0,
            history_len_sigma=0.6,
            history_max=1_000,
            history_pool_factor=3,
        ),
        document_dim=768,
        beyond_accuracy_impressions=2_000,
        beyond_accuracy_candidates=250,
    ),
}
