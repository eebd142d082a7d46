"""A recommender is a news encoder, a user encoder and a click predictor (NRMS, section 3).

`Recommender.forward` is the paper: encode the clicked and the candidate news, encode the
user, score each candidate (eq. 11). With engine=fast the same function is computed with less
work by an engine object handed over at construction (`newsrec.models.factory`); the
recommender calls it through the three methods of `Engine` and knows nothing else of it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from newsrec.models.base import NewsEncoder, UserEncoder


class Engine(Protocol):
    """What the recommender asks of an engine: its own functions, computed with less work."""

    def forward(self, model: Recommender, batch: dict[str, Tensor], table: dict) -> Tensor:
        """`Recommender.forward`."""

    def encode_news(
        self, model: Recommender, table: dict, rows: Tensor, user: Tensor | None
    ) -> Tensor:
        """`Recommender.encode_news`."""

    def cache(self, model: Recommender, table: dict, rows: Tensor | None) -> Any:
        """An evaluation's vectors computed once (`newsrec.evaluation.scorer` scores with it)."""


class Recommender(nn.Module):
    """News encoder + user encoder + click predictor (models/base.py says what each declares).

    `engine`: None computes every function as the papers write it, padded; an `Engine`
    computes the same functions faster (tests/test_scoring.py checks them equal).
    """

    def __init__(
        self,
        news_encoder: NewsEncoder,
        user_encoder: UserEncoder,
        click_predictor: nn.Module,
        engine: Engine | None = None,
    ):
        super().__init__()
        for part, base in ((news_encoder, NewsEncoder), (user_encoder, UserEncoder)):
            if not isinstance(part, base):
                raise TypeError(
                    f"{type(part).__name__} is not a {base.__name__}: subclass "
                    f"newsrec.models.base.{base.__name__} (see the README, 'Add a model')"
                )
        self.news_encoder = news_encoder
        self.user_encoder = user_encoder
        self.click_predictor = click_predictor
        self.needs_user = news_encoder.needs_user
        self.candidate_aware = user_encoder.candidate_aware
        # A user with no clicks gets a zero user vector from most encoders, so every candidate
        # of the impression would tie. This learned vector is added to the user vector where
        # the history is empty (LSTUR keeps its long-term vector beside it). It starts at zero
        # and learns from the training impressions with empty histories what such users click.
        self.empty_history = nn.Parameter(torch.zeros(news_encoder.output_dim))
        self.engine = engine

    @property
    def inputs(self) -> tuple[str, ...]:
        """What the model reads, for reports: the news features, and `user` when a part
        embeds the user's ID."""
        reads_user = self.news_encoder.reads_user or self.user_encoder.reads_user
        return (*self.news_encoder.features, *(("user",) if reads_user else ()))

    # -- the paper ------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], table: dict[str, Tensor]) -> Tensor:
        """Click logits [B, C] of each row's candidates given its history (training batches,
        or evaluation batches with one history per impression)."""
        if self.engine is not None:  # the same function, with less work
            return self.engine.forward(self, batch, table)
        user = batch["user"]
        clicked = self.encode_news(table, batch["history"], user)  # r_i: [B, N, D]
        candidates = self.encode_news(table, batch["candidates"], user)  # r_c: [B, C, D]
        u = self.encode_user(clicked, batch["history_mask"], user, candidates)  # [B, D]
        return self.click_predictor(u, candidates)  # eq. 11: y_c = u^T r_c, [B, C]

    def encode_news(
        self, table: dict[str, Tensor], rows: Tensor, user: Tensor | None = None
    ) -> Tensor:
        """News vectors [*rows.shape, D] of news-table rows `rows` [B, ...]; for a news
        encoder that reads the user (NPA), `user` [B] is the reader of each row of `rows`."""
        if self.engine is not None:
            return self.engine.encode_news(self, table, rows, user)
        if self.needs_user and user is None:
            raise ValueError("this news encoder needs the user of each news (needs_user)")
        readers = (
            user.view(-1, *[1] * (rows.dim() - 1)).expand_as(rows) if self.needs_user else None
        )
        news = {name: table[name][rows.reshape(-1)] for name in self.news_encoder.features}
        flat = None if readers is None else readers.reshape(-1)
        return self.news_encoder(news, flat).view(*rows.shape, -1)

    def encode_user(
        self,
        clicked: Tensor,
        history_mask: Tensor,
        user: Tensor,
        candidates: Tensor | None = None,
        prepared: bool = False,
    ) -> Tensor:
        """u [B, D] ([B, C, D] for a candidate-aware encoder) from the clicked news' vectors
        [B, N, D] (or, `prepared`, the user encoder's `news_inputs` of them), with the learned
        fallback added where the history is empty: the one place it is added."""
        encoder, aware = self.user_encoder, candidates if self.candidate_aware else None
        if prepared:
            u = encoder.encode_inputs(clicked, history_mask, user, aware)
        else:
            u = encoder(clicked, history_mask, user, aware)
        empty = ~history_mask.any(-1, keepdim=True)  # [B, 1]
        fallback = empty.to(self.empty_history.dtype) * self.empty_history  # [B, D]
        return u + (fallback.unsqueeze(1) if u.dim() == 3 else fallback)

    # -- evaluation ---------------------------------------------------------------------------
    def score_impressions(
        self, batch: dict[str, Tensor], table: dict[str, Tensor], max_pairs: int = 16_384
    ) -> Tensor:
        """Scores [B, C] of an evaluation batch (histories shared through `owner`) by the full
        model, a few impressions at a time (at most `max_pairs` news slots): right for every
        model, the reference the evaluation cache is tested against."""
        owner = batch["owner"]
        b, c = batch["candidates"].shape
        step = max(1, max_pairs // (batch["history"].shape[1] + c))
        parts = []
        for start in range(0, b, step):
            rows = owner[start : start + step]
            chunk = {
                "history": batch["history"][rows],
                "history_mask": batch["history_mask"][rows],
                "user": batch["user"][rows],
                "candidates": batch["candidates"][start : start + step],
            }
            parts.append(self(chunk, table))
        return torch.cat(parts)
