"""The one scorer: every evaluation batch's scores, for validation, test, prediction,
recommend.py, the Python API and the beyond-accuracy metrics.

With the fast engine the split's vectors are computed once (the engine's `EvaluationCache`:
each news once, each distinct history once); with engine=plain each impression goes through
the full model (`Recommender.score_impressions`), the papers' computation the cache is
tested equal to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from newsrec.models.recommender import Recommender


class Scorer:
    """Scores of a recommender's evaluation batches over news table `table`.

    `rows`: the news rows the evaluation reads (its candidates and histories; None: every
    row), so that only those are encoded. Build it under the evaluation's precision context
    (bf16 autocast): the vectors are computed here.
    """

    def __init__(
        self, recommender: Recommender, table: dict[str, Tensor], rows: Tensor | None = None
    ) -> None:
        self.recommender, self.table = recommender, table
        engine = recommender.engine
        with torch.no_grad():
            self.cache = None if engine is None else engine.cache(recommender, table, rows)

    @property
    def news_vectors(self) -> Tensor | None:
        """Every news vector [num_news, D] of the evaluation (zeros outside `rows`); None
        without the cache, or for a news encoder that reads the user (NPA)."""
        return None if self.cache is None else self.cache.news_vectors

    @torch.no_grad()
    def scores(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores [B, C] of an evaluation batch (see newsrec.data.info), in float32."""
        if self.cache is None:
            return self.recommender.score_impressions(batch, self.table).float()
        return self.cache.scores(batch).float()

    @torch.no_grad()
    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        """User vectors [H, D] of a batch's distinct histories (not for a candidate-aware
        user encoder, DKN, whose user vector depends on the candidate)."""
        if self.recommender.candidate_aware:
            raise ValueError("a candidate-aware user encoder has one user vector per candidate")
        if self.cache is not None:
            return self.cache.user_vectors(batch)
        history, user = batch["history"], batch["user"]
        clicked = self.recommender.encode_news(self.table, history, user)  # [H, N, D]
        return self.recommender.encode_user(clicked, batch["history_mask"], user)

    @torch.no_grad()
    def list_vectors(self, batch: dict[str, Tensor], rows: Tensor) -> Tensor:
        """The vectors [B, k, D] of the news `rows` [B, k] (table rows, -1 = none) listed for
        each impression of a batch, as the model sees them (NPA: as the impression's user
        reads them); zeros where there is no news."""
        safe = rows.clamp(min=0)
        if self.news_vectors is not None:
            vectors = self.news_vectors[safe]
        else:
            user = batch["user"][batch["owner"]]
            vectors = self.recommender.encode_news(self.table, safe, user)
        return vectors * (rows >= 0).unsqueeze(-1).to(vectors.dtype)
