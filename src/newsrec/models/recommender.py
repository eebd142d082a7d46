"""A recommender is a news encoder, a user encoder and a click predictor, chosen by config.

The composition owns the batching tricks, so encoders stay plain `nn.Module`s:
- in training, each distinct news of a batch is encoded once (`torch.unique` + gather):
  a batch of 64 samples names ~3,500 news slots but far fewer distinct news;
- in evaluation, every news of the table is encoded once and every distinct history once,
  then candidates are scored with one gather (`score_cached`). Encoders that make this
  inexact declare it: `needs_user` (NPA: the news vector depends on the user) and
  `candidate_aware` (DKN: the user vector depends on the candidate); `exact_scores` is
  the path that is right for every model.
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from newsrec.data.info import DataInfo
from newsrec.models.init import init_weights


class Recommender(nn.Module):
    def __init__(
        self, news_encoder: nn.Module, user_encoder: nn.Module, click_predictor: nn.Module
    ):
        super().__init__()
        self.news_encoder = news_encoder
        self.user_encoder = user_encoder
        self.click_predictor = click_predictor
        self.needs_user = bool(getattr(news_encoder, "needs_user", False))
        self.candidate_aware = bool(getattr(user_encoder, "candidate_aware", False))
        self.features = tuple(getattr(news_encoder, "features", ("title",)))
        self.dedup = True  # False encodes every news slot (the benchmark's reference)
        # --- empty-history fallback (issue 10) ---
        # A user with no clicks gets a zero user vector from most encoders, so every candidate
        # of the impression would tie. This learned vector is added to the user vector where
        # the history is empty (LSTUR keeps its long-term vector beside it). It starts at zero
        # and learns from the training impressions with empty histories what such users click.
        self.empty_history = nn.Parameter(torch.zeros(news_encoder.output_dim))

    @classmethod
    def from_config(cls, model: DictConfig | dict, data: DataInfo) -> Recommender:
        """Instantiate the three parts of `conf/model/<name>.yaml` for `data`."""
        news_encoder = hydra.utils.instantiate(model["news_encoder"])(data=data)
        user_encoder = hydra.utils.instantiate(model["user_encoder"])(
            data=data, news_dim=news_encoder.output_dim
        )
        click_predictor = hydra.utils.instantiate(model["click_predictor"])(
            dim=news_encoder.output_dim
        )
        return init_weights(cls(news_encoder, user_encoder, click_predictor))  # models/init.py

    # -- news ---------------------------------------------------------------------------------
    def encode_news(
        self, table: dict[str, Tensor], rows: Tensor, user: Tensor | None = None
    ) -> Tensor:
        """Vectors of news `rows` (any shape) -> [*rows.shape, D], each distinct one encoded once.

        For a user-dependent news encoder the distinct unit is the (user, news) pair; `user`
        then has the shape of `rows`.
        """
        flat = rows.reshape(-1)
        if not self.dedup:
            users = user.reshape(-1) if self.needs_user else None
            vectors = self.news_encoder(self._features(table, flat), user=users)
            return vectors.view(*rows.shape, -1)
        if self.needs_user:
            if user is None:
                raise ValueError("this news encoder needs the user of each news (needs_user)")
            key = user.reshape(-1) * table["title"].shape[0] + flat
            unique, inverse = torch.unique(key, return_inverse=True)
            news_rows, users = unique % table["title"].shape[0], unique // table["title"].shape[0]
        else:
            unique, inverse = torch.unique(flat, return_inverse=True)
            news_rows, users = unique, None
        vectors = self._encode_by_length(table, news_rows, users)  # [U, D]
        return vectors[inverse].view(*rows.shape, -1)

    def _encode_by_length(
        self, table: dict[str, Tensor], rows: Tensor, users: Tensor | None, buckets: int = 3
    ) -> Tensor:
        """Encode `rows` in a few groups of similar title length, each cut to its longest.

        One call pads every title to the batch's longest (~22 tokens for ~11.5 on average);
        three groups cut the padded work by about a third, for two extra encoder calls.
        """
        if len(rows) < 256 * buckets or getattr(self.news_encoder, "sorts_by_length", False):
            return self.news_encoder(self._features(table, rows), user=users)
        order = torch.argsort((table["title"][rows] != 0).sum(1), stable=True)
        parts = []
        for part in torch.tensor_split(order, buckets):
            part_users = users[part] if users is not None else None
            parts.append(self.news_encoder(self._features(table, rows[part]), user=part_users))
        vectors = torch.cat(parts)
        return torch.empty_like(vectors).index_copy_(0, order, vectors)

    def _features(self, table: dict[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
        """News-table features of `rows`, text cut to the longest text among them.

        Titles average ~11.5 of their 30 slots: the cut saves a third or more of the encoder's
        work and changes nothing, since padded positions are masked in every encoder.
        """
        features = {name: table[name][rows] for name in self.features}
        for text, aligned in (("title", "title_entities"), ("abstract", None)):
            if text in features and features[text].shape[0]:
                used = (features[text] != 0).any(0).nonzero()  # columns with a real word
                length = int(used.max()) + 1 if len(used) else 1
                features[text] = features[text][:, :length]
                if aligned in features:
                    features[aligned] = features[aligned][:, :length]
        return features

    def encode_all_news(
        self, table: dict[str, Tensor], rows: Tensor | None = None, chunk: int = 2048
    ) -> Tensor:
        """Vectors [num_news, D] of the news table's `rows` (default all; other rows zero).

        Rows are encoded in chunks of similar title length, so each chunk is cut short.
        Not for user-dependent news encoders (NPA).
        """
        title = table["title"]
        if rows is None:
            rows = torch.arange(title.shape[0], device=title.device)
        lengths = (title[rows] != 0).sum(1)
        rows = rows[torch.argsort(lengths, stable=True)]
        out = None
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            vectors = self.news_encoder(self._features(table, part))
            if out is None:
                out = vectors.new_zeros(title.shape[0], vectors.shape[-1])
            out[part] = vectors
        return out

    # -- scoring ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], table: dict[str, Tensor]) -> Tensor:
        """Click logits [B, C] for a batch with one history per row (training, exact scoring)."""
        history, candidates, user = batch["history"], batch["candidates"], batch["user"]
        b, n = history.shape
        rows = torch.cat([history, candidates], dim=1)  # one unique over both: they overlap
        users = user[:, None].expand_as(rows) if self.needs_user else None
        vectors = self.encode_news(table, rows, users)  # [B, N + C, D]
        return self._score(vectors[:, :n], batch["history_mask"], user, vectors[:, n:])

    def _score(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor
    ) -> Tensor:
        if self.candidate_aware:
            u = self.user_encoder(history, history_mask, user, candidates)  # [B, C, D]
            u = u + self._empty_history_term(history_mask).unsqueeze(1)  # fallback (issue 10)
        else:
            u = self.user_encoder(history, history_mask, user)  # [B, D]
            u = u + self._empty_history_term(history_mask)  # fallback (issue 10)
        return self.click_predictor(u, candidates)  # [B, C]

    def _empty_history_term(self, history_mask: Tensor) -> Tensor:
        """[B, D]: the learned fallback where a history is empty, zeros elsewhere (issue 10)."""
        empty = ~history_mask.any(-1, keepdim=True)  # [B, 1]
        return empty.to(self.empty_history.dtype) * self.empty_history

    def exact_scores(
        self, batch: dict[str, Tensor], table: dict[str, Tensor], max_pairs: int = 16_384
    ) -> Tensor:
        """Scores of an evaluation batch (histories shared through `owner`), right for any model.

        Impressions go through the full model a few at a time (at most `max_pairs` news slots):
        NPA encodes every (user, news) pair, and an evaluation batch can hold 300 candidates.
        """
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

    def history_inputs(self, news_vectors: Tensor) -> Tensor | None:
        """Per-news inputs of the user encoder for `cached_scores`, if it has any to precompute
        (NRMS: its self-attention's projections of each news vector); else None."""
        prepare = getattr(self.user_encoder, "prepare_history", None)
        return None if prepare is None else prepare(news_vectors)

    def cached_scores(
        self,
        batch: dict[str, Tensor],
        news_vectors: Tensor,
        history_inputs: Tensor | None = None,
        max_cells: int = 200_000,
    ) -> Tensor:
        """Scores of an evaluation batch from precomputed news vectors [num_news, D].

        Each distinct history of the batch is encoded once (`owner` maps impressions to them)
        and only real candidates are scored: impressions range from 2 to 300 candidates, so
        a padded [B, C, D] gather would be mostly padding. `history_inputs` (from
        `history_inputs(news_vectors)`) spares the user encoder its per-news work. A
        candidate-aware user encoder (DKN) needs one user vector per candidate: it runs on a
        few impressions at a time (at most `max_cells` candidate x history slots).
        """
        owner = batch["owner"]
        if self.candidate_aware:
            history = news_vectors[batch["history"]]  # [H, N, D]
            b, c = batch["candidates"].shape
            step = max(1, max_cells // (c * history.shape[1]))
            parts = []
            for start in range(0, b, step):
                rows = owner[start : start + step]
                candidates = news_vectors[batch["candidates"][start : start + step]]
                parts.append(
                    self._score(
                        history[rows], batch["history_mask"][rows], batch["user"][rows], candidates
                    )
                )
            return torch.cat(parts)
        if history_inputs is not None:
            prepared = history_inputs[batch["history"]]
            users = self.user_encoder.forward_prepared(prepared, batch["history_mask"])  # [H, D]
        else:
            history = news_vectors[batch["history"]]  # [H, N, D]
            users = self.user_encoder(history, batch["history_mask"], batch["user"])  # [H, D]
        users = users + self._empty_history_term(batch["history_mask"])  # fallback (issue 10)
        mask = batch["candidate_mask"]
        impression, slot = mask.nonzero(as_tuple=True)  # the real candidates, flat
        candidates = news_vectors[batch["candidates"][impression, slot]]  # [M, D]
        flat = self.click_predictor(users[owner[impression]], candidates.unsqueeze(1))[:, 0]
        scores = flat.new_zeros(mask.shape)
        scores[impression, slot] = flat
        return scores

    @property
    def cacheable(self) -> bool:
        """Whether news vectors can be computed once for everyone (not for NPA)."""
        return not self.needs_user
