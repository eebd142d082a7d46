"""What preprocessing produces (`newsrec.data.preprocess`) and the datamodule reads: the
settings, the vocabularies, the news table and each split's impressions as flat arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from newsrec.data.info import NEWS_FEATURES, DataInfo


@dataclass(frozen=True)
class PreprocessConfig:
    title_len: int = 30  # tokens kept of a title (NRMS/MIND code bases)
    abstract_len: int = 50  # tokens kept of an abstract (NAML's body length in recommenders)
    history_len: int = 50  # most recent clicks kept
    min_word_count: int = 1  # words seen fewer times in training text map to <unk>
    vocab_fields: tuple[str, ...] = ("title",)  # training text the vocabulary is built from
    # Days at the end of train held out for validation. 0 (the published protocols): every
    # train day is trained on and validation reads dev, MIND's own last day of the week.
    val_days: int = 0


@dataclass
class Vocabulary:
    """Index -> name lists. Index 0 is padding / unknown / unseen in each of them."""

    words: list[str]
    categories: list[str]
    subcategories: list[str]
    users: list[str]
    entities: list[str]

    @staticmethod
    def index(names: list[str]) -> dict[str, int]:
        return {name: i for i, name in enumerate(names)}


@dataclass
class SplitArrays:
    """One split's impressions as flat arrays; ragged fields as offsets + values."""

    impression_id: np.ndarray  # int64 [I], as in behaviors.tsv
    user: np.ndarray  # int64 [I], 0 = user unseen in training
    time: np.ndarray  # int64 [I], seconds
    history_offsets: np.ndarray  # int64 [I+1]
    history: np.ndarray  # int32 [sum], news rows, oldest first, at most history_len each
    history_id: np.ndarray  # int64 [I], equal for impressions with identical histories
    candidate_offsets: np.ndarray  # int64 [I+1]
    candidates: np.ndarray  # int32 [sum], news rows (0 = missing from news.tsv)
    labels: np.ndarray  # int8 [sum], 1 / 0, -1 where the split is unlabeled
    truth: np.ndarray | None = None  # float32 [sum], the synthetic world's click probability

    def __len__(self) -> int:
        return len(self.impression_id)

    @property
    def labeled(self) -> bool:
        return bool(len(self.labels)) and int(self.labels.min()) >= 0


@dataclass
class Preprocessed:
    config: PreprocessConfig
    vocab: Vocabulary
    news: dict[str, np.ndarray]  # the news table (info.py), row 0 = padding news
    entity_vectors: np.ndarray  # float32 [num_entities, dim], row 0 = zeros
    splits: dict[str, SplitArrays]
    val_start: int  # train impressions at or after this time are validation
    report: dict[str, int] = field(default_factory=dict)
    path: Path | None = None
    # The news-table features this data really has (a model reading another is refused).
    features: tuple[str, ...] = NEWS_FEATURES

    def info(self) -> DataInfo:
        vectors = self.news.get("document_vector")
        return DataInfo(
            vocab_size=len(self.vocab.words),
            num_categories=len(self.vocab.categories),
            num_subcategories=len(self.vocab.subcategories),
            num_users=len(self.vocab.users),
            num_entities=len(self.vocab.entities),
            num_news=len(self.news["title"]),
            title_len=self.config.title_len,
            abstract_len=self.config.abstract_len,
            entity_dim=int(self.entity_vectors.shape[1]),
            document_dim=int(vectors.shape[1]) if vectors is not None else 0,
        )
