"""An evaluation without repeated work: each news encoded once, each history once.

Scoring every impression with the full model (`Recommender.score_impressions`) re-encodes
each news as often as it appears, ~87 times on MIND-small's dev split. The cache encodes the
split's news once (`all_news_vectors`), does the user encoder's per-news work once
per news (NRMS: its self-attention's projections), then scores each distinct history's user
vector against the real candidates only. Two models need more than one vector per news:
- a news encoder that reads the user (NPA): its user-independent part (the title CNN) is
  kept per news, and each batch personalises it once per distinct (user, news) pair;
- a candidate-aware user encoder (DKN): one user vector per candidate, a few impressions at
  a time.
`newsrec.evaluation.scorer.Scorer` scores through it; tests/test_scoring.py checks it equal to
scoring each impression alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from newsrec.data.ragged import slices
from newsrec.models.engine.packing import length_groups, news_features, table_size

if TYPE_CHECKING:
    from newsrec.models.base import NewsEncoder
    from newsrec.models.recommender import Recommender


def all_news_vectors(encoder: NewsEncoder, table: dict, rows: Tensor, chunk: int = 2048) -> Tensor:
    """Vectors [num_news, D] of the news table's `rows` (other rows zero), from their real
    words, in chunks of similar title length (every news of a split, without holding every
    word at once)."""
    title = table["title"]
    _, parts = length_groups((title[rows] != 0).sum(1), max_rows=chunk)
    out = None
    for part in parts:
        news = rows[part]
        vectors = encoder.forward_packed(news_features(table, news, encoder.features))
        if out is None:
            out = vectors.new_zeros(title.shape[0], vectors.shape[-1])
        out[news] = vectors
    return out


class EvaluationCache:
    """The vectors of one evaluation (the news `rows` of a split), and its batches' scores."""

    def __init__(self, model: Recommender, table: dict, rows: Tensor) -> None:
        self.model, self.table = model, table
        self.news_vectors: Tensor | None = None  # [num_news, D]; None for NPA
        self.history_inputs: Tensor | None = None  # the user encoder's news_inputs of them
        encoder = model.news_encoder
        if model.needs_user:
            # The user-independent part of every news of the split, and where each row is in it.
            self.shared = encoder.user_independent(news_features(table, rows, encoder.features))
            self.position = torch.full((table_size(table),), -1, device=rows.device)
            self.position[rows] = torch.arange(len(rows), device=rows.device)
            return
        self.news_vectors = all_news_vectors(encoder, table, rows)
        if not model.candidate_aware:
            self.history_inputs = model.user_encoder.news_inputs(self.news_vectors)

    def scores(
        self, batch: dict[str, Tensor], max_cells: int = 8_192, max_pairs: int = 4096
    ) -> Tensor:
        """Scores [B, C] of an evaluation batch (histories shared through `owner`).

        Only real candidates are scored: impressions range from 2 to 300 candidates, so a
        padded [B, C, D] gather would be mostly padding. A few thousand candidates at a time:
        the gathered [m, D] pairs stay in the CPU's cache.
        """
        if self.model.candidate_aware:
            return self._candidate_aware_scores(batch, max_cells)
        mask, owner = batch["candidate_mask"], batch["owner"]
        impression, slot = mask.nonzero(as_tuple=True)  # the real candidates, flat
        news, group = batch["candidates"][impression, slot], owner[impression]  # [M], [M]
        users = self.user_vectors(batch)  # [H, D]
        if self.model.needs_user:  # each candidate as its reader sees it
            vectors, news = self._personalized(news, batch["user"][group])  # [P, D], [M]
        else:
            vectors = self.news_vectors
        predictor = self.model.click_predictor
        parts = []
        for part in slices(len(news), max_pairs):
            # gathered a part at a time: [m, D] stays in the CPU's cache, where one [M, D]
            # gather of a whole batch would not (~60 MB on MIND-large)
            candidates = vectors[news[part]].unsqueeze(1)  # [m, 1, D]
            parts.append(predictor(users[group[part]], candidates)[:, 0])
        flat = torch.cat(parts)
        scores = flat.new_zeros(mask.shape)
        scores[impression, slot] = flat
        return scores

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        """User vectors [H, D] of a batch's distinct histories (not for a candidate-aware
        user encoder, whose user vector depends on the candidate)."""
        history, mask, user = batch["history"], batch["history_mask"], batch["user"]
        if self.model.needs_user:  # each history news as its reader sees it
            readers = user[:, None].expand_as(history)
            vectors, index = self._personalized(history.reshape(-1), readers.reshape(-1))
            return self.model.encode_user(vectors[index.view(history.shape)], mask, user)
        return self.model.encode_user(self.history_inputs[history], mask, user, prepared=True)

    def _personalized(
        self, news: Tensor, user: Tensor, max_pairs: int = 1024
    ) -> tuple[Tensor, Tensor]:
        """The (news, user) pairs' vectors: each distinct pair once, [P, D], and the index [M]
        of each given pair into them. A thousand pairs at a time: a pair attends over its
        news' ~12 CNN states, gathered per pair; a whole batch's (~60k pairs, ~1 GB of
        states) would leave the CPU's cache for memory."""
        num_news = len(self.position)
        pairs, inverse = torch.unique(user * num_news + news, return_inverse=True)
        encoder = self.model.news_encoder
        vectors = [
            encoder.personalize(self.shared, self.position[part % num_news], part // num_news)
            for part in pairs.split(max_pairs)
        ]
        return torch.cat(vectors), inverse

    def _candidate_aware_scores(self, batch: dict[str, Tensor], max_cells: int) -> Tensor:
        """DKN: impressions grouped by their number of candidates, each group cut to its own
        widest (impressions hold 2 to 300 candidates: a batch padded to its widest would be
        mostly padding), a few at a time (at most `max_cells` candidate x history slots: the
        attention's [cells, hidden] sums, 3 MB at 8,192 x 100, stay in the CPU's cache; at
        200,000 cells they did not, and evaluation took twice as long).
        Padding slots are left at 0, as the other models' scores leave them."""
        vectors, owner, mask = self.news_vectors, batch["owner"], batch["candidate_mask"]
        history = vectors[batch["history"]]  # [H, N, D]
        counts = mask.sum(1)
        order = torch.argsort(counts)
        widths = counts[order].clamp(min=1).tolist()  # ascending
        scores = None
        start, n = 0, history.shape[1]
        while start < len(order):
            end = start + 1  # the part grows while its widest impression's cells fit
            while end < len(order) and (end + 1 - start) * widths[end] * n <= max_cells:
                end += 1
            part, width = order[start:end], widths[end - 1]
            rows = owner[part]
            candidates = vectors[batch["candidates"][part, :width]]  # [b', width, D]
            mask_h, user = batch["history_mask"][rows], batch["user"][rows]
            u = self.model.encode_user(history[rows], mask_h, user, candidates)  # [b', w, D]
            part_scores = self.model.click_predictor(u, candidates)  # [b', width]
            if scores is None:
                scores = part_scores.new_zeros(mask.shape)
            scores[part, :width] = part_scores
            start = end
        return scores
