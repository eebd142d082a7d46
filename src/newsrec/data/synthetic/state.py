"""`World`: everything the synthetic world's story draws, step by step (topics, words,
entities, news, users, histories, the news alive each hour), shared by its builders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from newsrec.data.synthetic.config import DAY, WorldConfig


@dataclass
class World:
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
