"""Evaluation without repeated work: each news encoded once, each history once, one gather.

Scoring every impression with the full model (`Recommender.exact_scores`) re-encodes each
news as often as it appears, ~87 times on MIND-small's dev split. `EvaluationCache` instead
encodes the split's news once, in groups of similar title length each cut to its longest,
does the user encoder's per-news work once per news (NRMS: its self-attention's
projections), then scores each distinct history's user vector against the real candidates
with one gather. Models whose news vector depends on the user (NPA, `needs_user`) cannot
share news vectors and take the exact path; `tests/test_scoring.py` checks the two equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from newsrec.data.ragged import slices
from newsrec.models.base import NewsEncoder
from newsrec.models.engine.packing import length_groups, unsort, used_columns

if TYPE_CHECKING:
    from newsrec.models.recommender import Recommender

# Text features and the features aligned with their words (cut together).
_TEXTS = (("title", "title_entities"), ("abstract", None))


def news_features(
    table: dict[str, Tensor], rows: Tensor, features: tuple[str, ...]
) -> dict[str, Tensor]:
    """News-table `features` of `rows`, text cut to the longest text among them.

    Titles average ~11.5 of their 30 slots: the cut saves a third or more of the encoder's
    work and changes nothing, since padded positions are masked in every encoder.
    """
    out = {name: table[name][rows] for name in features}
    for text, aligned in _TEXTS:
        if text in out and out[text].shape[0]:
            cut = slice(0, used_columns(out[text] != 0).stop)  # right padding only
            out[text] = out[text][:, cut]
            if aligned in out:
                out[aligned] = out[aligned][:, cut]
    return out


def encode_rows(
    encoder: NewsEncoder,
    table: dict[str, Tensor],
    rows: Tensor,
    users: Tensor | None = None,
    groups: int = 3,
    min_group: int = 256,
) -> Tensor:
    """Vectors [n, D] of news `rows` (and their `users` for a user-dependent encoder).

    One call pads every title to the batch's longest (~22 tokens for ~11.5 on average);
    three groups of similar length, each cut to its longest, cut the padded work by about
    a third for two extra encoder calls. Batches of fewer than `min_group` rows a group, and
    encoders that sort by length themselves, get one call.
    """
    if len(rows) < min_group * groups or encoder.sorts_by_length:
        return encoder(news_features(table, rows, encoder.features), user=users)
    order, parts = length_groups((table["title"][rows] != 0).sum(1), groups=groups)
    vectors = torch.cat(
        [
            encoder(
                news_features(table, rows[part], encoder.features),
                user=users[part] if users is not None else None,
            )
            for part in parts
        ]
    )
    return unsort(vectors, order)


def encode_all_news(
    encoder: NewsEncoder, table: dict[str, Tensor], rows: Tensor | None = None, chunk: int = 2048
) -> Tensor:
    """Vectors [num_news, D] of the news table's `rows` (default all; other rows zero).

    Rows are encoded in chunks of similar title length, so each chunk is cut short.
    Not for user-dependent news encoders (NPA).
    """
    title = table["title"]
    if rows is None:
        rows = torch.arange(title.shape[0], device=title.device)
    _, parts = length_groups((title[rows] != 0).sum(1), max_rows=chunk)
    out = None
    for part in parts:
        news = rows[part]  # part: positions in rows, shortest titles first
        vectors = encoder(news_features(table, news, encoder.features))
        if out is None:
            out = vectors.new_zeros(title.shape[0], vectors.shape[-1])
        out[news] = vectors
    return out


class EvaluationCache:
    """News vectors of one evaluation (a split), and the scores of its batches from them.

    `prepare=False` skips the user encoder's per-news work (the same numbers, slower):
    the tests compare both.
    """

    def __init__(
        self,
        model: Recommender,
        table: dict[str, Tensor],
        rows: Tensor | None = None,
        prepare: bool = True,
    ) -> None:
        if not model.cacheable:
            raise ValueError("news vectors depend on the user (needs_user): use exact_scores")
        self.model = model
        self.news_vectors = encode_all_news(model.news_encoder, table, rows)  # [num_news, D]
        # The user encoder's per-news work (NRMS: Q, K, V of eq. 6), once per news of the split.
        encoder = model.user_encoder
        self.history_inputs = encoder.news_inputs(self.news_vectors) if prepare else None

    def scores(
        self, batch: dict[str, Tensor], max_cells: int = 200_000, max_pairs: int = 4096
    ) -> Tensor:
        """Scores [B, C] of an evaluation batch (histories shared through `owner`).

        Each distinct history of the batch is encoded once and only real candidates are
        scored: impressions range from 2 to 300 candidates, so a padded [B, C, D] gather
        would be mostly padding. A candidate-aware user encoder (DKN) needs one user vector
        per candidate: it runs on a few impressions at a time (at most `max_cells`
        candidate x history slots).
        """
        model, vectors, owner = self.model, self.news_vectors, batch["owner"]
        if model.candidate_aware:
            history = vectors[batch["history"]]  # [H, N, D]
            b, c = batch["candidates"].shape
            step = max(1, max_cells // (c * history.shape[1]))
            parts = []
            for start in range(0, b, step):
                rows = owner[start : start + step]
                candidates = vectors[batch["candidates"][start : start + step]]
                mask, user = batch["history_mask"][rows], batch["user"][rows]
                parts.append(model.click_scores(history[rows], mask, user, candidates))
            return torch.cat(parts)
        users = self.user_vectors(batch)  # [H, D]
        mask = batch["candidate_mask"]
        impression, slot = mask.nonzero(as_tuple=True)  # the real candidates, flat
        news, user = batch["candidates"][impression, slot], owner[impression]  # [M], [M]
        # A few thousand candidates at a time: the gathered [m, D] pairs stay in the CPU's
        # cache instead of two [M, D] copies (2 x 60 MB for a MIND-large batch) in memory.
        flat = torch.cat(
            [
                model.click_predictor(users[user[part]], vectors[news[part]].unsqueeze(1))[:, 0]
                for part in slices(len(news), max_pairs)
            ]
        )
        scores = flat.new_zeros(mask.shape)
        scores[impression, slot] = flat
        return scores

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        """User vectors [H, D] of a batch's distinct histories (not for a candidate-aware
        user encoder, whose user vector depends on the candidate)."""
        model, mask = self.model, batch["history_mask"]
        if self.history_inputs is not None:
            inputs = self.history_inputs[batch["history"]]  # [H, N, D']
            users = model.user_encoder.encode_inputs(inputs, mask)
            return users + model.empty_history_term(mask)  # as Recommender.user_vector
        history = self.news_vectors[batch["history"]]  # [H, N, D]
        return model.user_vector(history, mask, batch["user"])
