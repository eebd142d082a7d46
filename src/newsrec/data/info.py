"""What a model needs to know about the data, and the shape of the batches it receives.

Sizes here always come from preprocessing, never from a hand-written config: this is the
contract between the data side (`newsrec.data`) and the model side (`newsrec.models`).

The news table (every news of the vocabulary, one row each; row 0 is the padding news, whose
features are all padding, and it also stands for a news ID missing from news.tsv):

    title           int64 [num_news, title_len]     word ids, 0 = padding, 1 = unknown word
    abstract        int64 [num_news, abstract_len]  word ids, same vocabulary as titles
    category        int64 [num_news]                0 = unknown
    subcategory     int64 [num_news]                0 = unknown
    title_entities  int64 [num_news, title_len]     entity id of each title token, 0 = none

Datasets beyond MIND carry the features their files have (`Preprocessed.features`
says which): EB-NeRD has no title entities, xMIND's translated titles none either (MIND's
entity offsets point into the English text), and EB-NeRD may add

    document_vector float32 [num_news, document_dim] a pre-computed article embedding (the
                                                    toolkit's artifacts), zeros where missing

With a PLM news encoder (newsrec.data.plm_tokens, newsrec.models.plm) also:

    plm_title       int64 [num_news, max_len]       the PLM tokenizer's ids, specials included
    plm_title_mask  int64 [num_news, max_len]       1 = real token, 0 = padding

and, as tensors (`news_table_tensors`), the row index, the key of per-news caches:

    row             int64 [num_news]                0, 1, ..., num_news - 1

A batch is a dict of tensors that index into that table (newsrec.data.datamodule).

A training batch, one sample per click (B samples, N = history_len, K = npratio):

    history         int64 [B, N]      news rows of the clicked history, most recent last
                                      (left padded)
    history_mask    bool  [B, N]      True where a history slot holds a real news
    candidates      int64 [B, 1 + K]  the clicked news and K non-clicks of its impression
    candidate_mask  bool  [B, 1 + K]  all True (every training candidate is real)
    user            int64 [B]         user row, 0 = a user unseen in training
    target          int64 [B]         the position of the clicked news among the candidates

An evaluation batch (validation, test, predict): B impressions that share G <= B distinct
(user, history) groups, so each history is encoded once; N' is the longest history of the
batch and C the most candidates of one of its impressions:

    history         int64 [G, N']     one row per group, most recent last (left padded)
    history_mask    bool  [G, N']
    user            int64 [G]         the group's user row
    owner           int64 [B]         the group (row of `history`) of each impression
    candidates      int64 [B, C]      news rows in behaviors.tsv order (right padded)
    candidate_mask  bool  [B, C]      True where a candidate slot is real
    labels          int64 [B, C]      1 click, 0 no click, -1 padding or unlabeled split
    impression      int64 [B]         the impression id of behaviors.tsv (global under DDP)
    truth           float32 [B, C]    synthetic worlds only: the true click probability
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

NEWS_FEATURES = ("title", "abstract", "category", "subcategory", "title_entities")
# Features derived for any dataset with titles, or added to every table (NewsRecModule's row).
DERIVED_FEATURES = ("plm_title", "plm_title_mask", "row")
TEXTS = ("title", "abstract")  # the news-table features that hold words of the vocabulary


@dataclass(frozen=True)
class NewsInputs:
    """What a news encoder reads, declared before the data exists (`NewsEncoder.declare`).

    The data side preprocesses exactly this: the word vocabulary is built from the `TEXTS`
    among `features`, and a `tokenizer` (a pretrained language model's) tokenises
    `token_fields` into `max_len` tokens per news (newsrec.data.plm_tokens).
    """

    features: tuple[str, ...] = ("title",)  # news-table keys the encoder reads
    tokenizer: str | None = None  # hub name or local folder of a PLM tokenizer
    max_len: int = 30  # tokens per news for that tokenizer, special tokens included
    token_fields: tuple[str, ...] = ("title",)  # the texts the tokenizer reads

    @property
    def vocab_fields(self) -> tuple[str, ...]:
        """The texts whose words feed the vocabulary (at least the title)."""
        return tuple(t for t in TEXTS if t in self.features) or ("title",)


def news_table_tensors(arrays: dict) -> dict[str, torch.Tensor]:
    """The news table's arrays as tensors (integers as int64, the dtype embeddings take;
    floats as they are), with the row index `row`."""
    table = {}
    for name, array in arrays.items():
        dtype = np.float32 if np.issubdtype(np.asarray(array).dtype, np.floating) else np.int64
        table[name] = torch.from_numpy(np.array(array, dtype=dtype))  # a copy: caches are read-only
    table["row"] = torch.arange(len(next(iter(table.values()))))
    return table


@dataclass
class DataInfo:
    """Sizes of the vocabularies and tables, read off the preprocessed data."""

    vocab_size: int  # words, including 0 = padding and 1 = unknown
    num_categories: int  # including 0 = unknown
    num_subcategories: int  # including 0 = unknown
    num_users: int  # including 0 = unseen user
    num_entities: int  # including 0 = no entity
    num_news: int  # rows of the news table, including row 0
    title_len: int = 30
    abstract_len: int = 50
    entity_dim: int = 100
    document_dim: int = 0  # width of the document vectors (0: the data has none)
    # Optional initialisations; not part of hparams (they live in the state dict afterwards).
    word_embeddings: torch.Tensor | None = None  # [vocab_size, word_dim], e.g. GloVe
    entity_embeddings: torch.Tensor | None = None  # [num_entities, entity_dim], TransE

    def sizes(self) -> dict[str, int]:
        """The plain-number part, safe to store in a checkpoint's hyperparameters."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("word_embeddings", "entity_embeddings")
        }


@dataclass
class SplitPaths:
    """Where a data source put its MIND-format folders (each holds news.tsv, behaviors.tsv, ...).

    `test` is the unlabeled leaderboard split when there is one (MIND-large, the synthetic
    world), else None. `has_truth` says whether each folder also holds the synthetic world's
    `click_probability.tsv` (the true click probability of every candidate).

    `layout` names the files' format: "mind" (news.tsv and behaviors.tsv in each folder) or
    "ebnerd" (behaviors.parquet and history.parquet in each folder, the news in `articles`,
    optionally pre-computed `document_vectors`; newsrec.data.ebnerd), so preprocessing
    knows which reader to use.
    """

    train: Path
    dev: Path
    test: Path | None = None
    has_truth: bool = False
    layout: str = "mind"
    articles: tuple[Path, ...] = ()  # EB-NeRD: articles.parquet files, the first row of an id wins
    document_vectors: Path | None = None  # EB-NeRD: a parquet of (article_id, vector)
    document_vector_column: str | None = None  # its vector column (None: the last one)
