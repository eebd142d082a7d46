"""The fast engine: the recommender's functions (`Recommender.forward`, `encode_news`) with
less work, and an evaluation's vectors computed once (`EvaluationCache`).

What it saves, each tested equal to the plain computation (tests/test_scoring.py):
- each distinct news of a training batch is encoded once (`torch.unique` + gather): a batch
  of 64 samples names ~3,500 news slots but far fewer distinct news; for a news encoder that
  reads the user (NPA), its user-independent part once per distinct news and the rest once
  per distinct (user, news) pair;
- news encoders run on the real words only (`NewsEncoder.forward_packed`);
- the user encoder's per-news work (NRMS: eq. 6's Q, K, V) once per distinct news
  (`UserEncoder.news_inputs`), and histories in groups of similar length, each cut to its
  longest (`encode_inputs`);
- the layers' device kernels (`FastPath.set_fast`: cheap CPU dropout masks, attention
  layouts by device);
- shape buckets: counts of distinct news rounded up to a few sizes (`packing.bucket`).
It calls the parts only through the methods models/base.py and models/layers define for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from newsrec.models.engine.cache import EvaluationCache
from newsrec.models.engine.packing import (
    bucket,
    length_groups,
    news_features,
    table_size,
    take,
    unsort,
    used_columns,
)

if TYPE_CHECKING:
    from newsrec.models.recommender import Recommender


def padded_rows(rows: Tensor) -> Tensor:
    """`rows` padded with row 0 (the empty news) to a bucketed count: a run sees a few batch
    shapes, not a new one every step (packing.bucket)."""
    extra = bucket(len(rows)) - len(rows)
    return torch.cat([rows, rows.new_zeros(extra)]) if extra else rows


class FastEngine:
    """Computes a recommender's functions with less work; see the module docstring."""

    def __init__(self, history_groups: int = 2, min_group_rows: int = 16) -> None:
        # A batch's histories in `history_groups` groups of similar length, each cut to its
        # longest (batches of fewer than history_groups * min_group_rows: one group).
        self.history_groups, self.min_group_rows = history_groups, min_group_rows

    def attach(self, model: Recommender) -> None:
        """Switch on the fast path of every layer of `model` that has one (once, at build)."""
        for module in model.modules():
            if hasattr(module, "set_fast"):
                module.set_fast(True)

    # -- Recommender.forward --------------------------------------------------------------
    def forward(self, model: Recommender, batch: dict[str, Tensor], table: dict) -> Tensor:
        history, mask, user = batch["history"], batch["history_mask"], batch["user"]
        n = history.shape[1]
        rows = torch.cat([history, batch["candidates"]], dim=1)  # one unique: they overlap
        vectors, index = self.distinct_news(model, table, rows, user)  # [U, D], [B, N + C]
        candidates = take(vectors, index[:, n:])  # [B, C, D]
        if model.candidate_aware:  # DKN: one user vector per candidate
            u = model.encode_user(take(vectors, index[:, :n]), mask, user, candidates)
        else:
            inputs = model.user_encoder.news_inputs(vectors)  # once per distinct news
            u = self.users(model, inputs, index[:, :n], mask, user)
        return model.click_predictor(u, candidates)  # eq. 11

    def users(
        self, model: Recommender, inputs: Tensor, history: Tensor, mask: Tensor, user: Tensor
    ) -> Tensor:
        """User vectors [B, D] from per-news inputs [U, D'] of histories `history` [B, N]
        (indices into them), in groups of similar history length, each cut to its longest:
        about half of a training batch's 50 history slots are padding (MIND's median history
        is ~19 clicks), and self-attention costs the square of the width."""
        if len(history) < self.history_groups * self.min_group_rows:
            return model.encode_user(take(inputs, history), mask, user, prepared=True)
        order, parts = length_groups(mask.sum(1), groups=self.history_groups)
        users = []
        for part in parts:
            part_mask = mask[part]
            # Widths rounded up to a multiple of 8 (at most 7 per group over a run): in bf16 on
            # CPU every new shape costs a cached oneDNN primitive (packing.bucket).
            cut = used_columns(part_mask, step=8)
            clicked = take(inputs, history[part][:, cut])
            users.append(model.encode_user(clicked, part_mask[:, cut], user[part], prepared=True))
        return unsort(torch.cat(users), order)

    # -- Recommender.encode_news ----------------------------------------------------------
    def encode_news(
        self, model: Recommender, table: dict, rows: Tensor, user: Tensor | None
    ) -> Tensor:
        vectors, index = self.distinct_news(model, table, rows, user)
        return take(vectors, index)

    def distinct_news(
        self, model: Recommender, table: dict, rows: Tensor, user: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The distinct news of `rows` [B, ...] encoded once -> (vectors [U, D], the index of
        each of `rows` into them, shaped like `rows`). For a news encoder that reads the
        user, the distinct unit is the (user, news) pair, `user` [B] reading row b."""
        encoder, flat = model.news_encoder, rows.reshape(-1)
        if not model.needs_user:
            unique, inverse = torch.unique(flat, return_inverse=True)
            news = news_features(table, padded_rows(unique), encoder.features)
            return encoder.forward_packed(news), inverse.view(rows.shape)
        if user is None:
            raise ValueError("this news encoder needs the user of each news (needs_user)")
        readers = user.view(-1, *[1] * (rows.dim() - 1)).expand_as(rows).reshape(-1)
        num_news = table_size(table)
        pairs, inverse = torch.unique(readers * num_news + flat, return_inverse=True)
        pairs = padded_rows(pairs)  # pair 0 = (user 0, the empty news)
        news, index = torch.unique(pairs % num_news, return_inverse=True)
        shared = encoder.user_independent(news_features(table, padded_rows(news), encoder.features))
        return encoder.personalize(shared, index, pairs // num_news), inverse.view(rows.shape)

    # -- evaluation -------------------------------------------------------------------------
    def cache(self, model: Recommender, table: dict, rows: Tensor | None) -> EvaluationCache:
        """The vectors of an evaluation over news `rows` (None: all), computed once."""
        if rows is None:
            rows = torch.arange(table_size(table), device=table["title"].device)
        return EvaluationCache(model, table, rows)
