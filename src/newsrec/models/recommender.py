"""A recommender is a news encoder, a user encoder and a click predictor, chosen by config.

Training encodes each distinct news of a batch once (`torch.unique` + gather): a batch of
64 samples names ~3,500 news slots but far fewer distinct news. Evaluation goes through
the engine's cache (`newsrec.models.engine.EvaluationCache`) where the model allows it
(`cacheable`), else through `exact_scores`, right for every model.
"""

from __future__ import annotations

import hydra
import torch
from torch import Tensor, nn

from newsrec.data.info import DataInfo
from newsrec.models.base import NewsEncoder, UserEncoder
from newsrec.models.engine import encode_rows, news_features, use_fast_kernels
from newsrec.models.engine.packing import bucket, length_groups, unsort, used_columns
from newsrec.models.init import init_weights


def take(rows: Tensor, index: Tensor) -> Tensor:
    """rows[index] -> [*index.shape, D] for rows [U, D]: as indexing, but its backward adds
    the gradients up 4-5x faster on CPU (index_select's, not index_put's)."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, rows.shape[-1])


class Recommender(nn.Module):
    """News encoder + user encoder + click predictor (models/base.py says what each declares).

    By default each Dropout and self-attention layer gets the engine's kernel for the device
    the model is on (engine/kernels.py), picked when the model is built and again whenever
    it is moved (`_apply`: `.to()`, `.cuda()`, ...), never per step. `fast=False` keeps the
    layers' plain computations. (The NRMS title encoder's packing is its own construction
    flag, `pack`.)
    """

    def __init__(
        self,
        news_encoder: NewsEncoder,
        user_encoder: UserEncoder,
        click_predictor: nn.Module,
        fast: bool = True,
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
        self.fast = fast
        self.dedup = True  # False encodes every news slot (the benchmark's reference)
        # A user with no clicks gets a zero user vector from most encoders, so every candidate
        # of the impression would tie. This learned vector is added to the user vector where
        # the history is empty (LSTUR keeps its long-term vector beside it). It starts at zero
        # and learns from the training impressions with empty histories what such users click.
        self.empty_history = nn.Parameter(torch.zeros(news_encoder.output_dim))
        self._use_kernels()

    @classmethod
    def build(
        cls,
        news_encoder: dict,
        user_encoder: dict,
        click_predictor: dict,
        data: DataInfo,
        engine: str = "fast",
    ) -> Recommender:
        """The three parts of a model config (conf/model/<name>.yaml, `_partial_`) for `data`."""
        news = hydra.utils.instantiate(news_encoder)(data=data)
        user = hydra.utils.instantiate(user_encoder)(data=data, news_dim=news.output_dim)
        predictor = hydra.utils.instantiate(click_predictor)(dim=news.output_dim)
        return init_weights(cls(news, user, predictor, fast=engine == "fast"))  # models/init.py

    def _use_kernels(self) -> None:
        device = next(self.parameters(), torch.empty(0)).device
        use_fast_kernels(self, device, self.fast)

    def _apply(self, fn, recurse: bool = True):
        # .to() / .cuda() / .cpu() all end here: the kernels follow the new device.
        module = super()._apply(fn, recurse)
        self._use_kernels()
        return module

    @property
    def inputs(self) -> tuple[str, ...]:
        """What the model reads, for reports: the news features, and `user` when a part
        embeds the user's ID."""
        reads_user = self.news_encoder.reads_user or self.user_encoder.reads_user
        return (*self.news_encoder.features, *(("user",) if reads_user else ()))

    @property
    def cacheable(self) -> bool:
        """Whether news vectors can be computed once for everyone (not for NPA)."""
        return not self.needs_user

    # -- news ---------------------------------------------------------------------------------
    def encode_news(
        self, table: dict[str, Tensor], rows: Tensor, user: Tensor | None = None
    ) -> Tensor:
        """Vectors of news `rows` (any shape) -> [*rows.shape, D], each distinct one encoded once.

        For a user-dependent news encoder the distinct unit is the (user, news) pair; `user`
        then has the shape of `rows`.
        """
        if self.needs_user and user is None:
            raise ValueError("this news encoder needs the user of each news (needs_user)")
        if not self.dedup:
            users = user.reshape(-1) if self.needs_user else None
            features = news_features(table, rows.reshape(-1), self.news_encoder.features)
            return self.news_encoder(features, user=users).view(*rows.shape, -1)
        vectors, inverse = self.encode_distinct(table, rows, user)
        return take(vectors, inverse)

    def encode_distinct(
        self, table: dict[str, Tensor], rows: Tensor, user: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The distinct news of `rows` encoded once -> (vectors [U, D], index of each of
        `rows` into them, shaped like `rows`); see `encode_news`."""
        flat = rows.reshape(-1)
        if self.needs_user:
            num_news = table["title"].shape[0]
            unique, inverse = torch.unique(user.reshape(-1) * num_news + flat, return_inverse=True)
            news_rows, users = unique % num_news, unique // num_news
        else:
            unique, inverse = torch.unique(flat, return_inverse=True)
            news_rows, users = unique, None
        # The distinct news are padded with row 0 (the empty news) to a bucketed count, so a
        # run sees a few batch shapes, not a new one every step (engine/packing.py, bucket).
        extra = bucket(len(news_rows)) - len(news_rows)
        if extra:
            news_rows = torch.cat([news_rows, news_rows.new_zeros(extra)])
            users = None if users is None else torch.cat([users, users.new_zeros(extra)])
        vectors = encode_rows(self.news_encoder, table, news_rows, users)  # [U + extra, D]
        return vectors, inverse.view(rows.shape)

    # -- scoring ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], table: dict[str, Tensor]) -> Tensor:
        """Click logits [B, C] for a batch with one history per row (training, exact scoring)."""
        history, candidates, user = batch["history"], batch["candidates"], batch["user"]
        n, mask = history.shape[1], batch["history_mask"]
        rows = torch.cat([history, candidates], dim=1)  # one unique over both: they overlap
        users = user[:, None].expand_as(rows) if self.needs_user else None
        if not self.dedup:
            vectors = self.encode_news(table, rows, users)  # [B, N + C, D]
            return self.click_scores(vectors[:, :n], mask, user, vectors[:, n:])
        vectors, index = self.encode_distinct(table, rows, users)  # [U, D], [B, N + C]
        inputs = None if self.candidate_aware else self.user_encoder.news_inputs(vectors)
        if inputs is None:
            clicked, shown = take(vectors, index[:, :n]), take(vectors, index[:, n:])
            return self.click_scores(clicked, mask, user, shown)
        # The user encoder's per-news work (NRMS: eq. 6's Q, K, V) once per distinct news.
        u = self.users_from_inputs(inputs, index[:, :n], mask)
        u = u + self.empty_history_term(mask)  # as user_vector
        return self.click_predictor(u, take(vectors, index[:, n:]))  # eq. 11

    def users_from_inputs(
        self, inputs: Tensor, history: Tensor, mask: Tensor, groups: int = 2, min_rows: int = 16
    ) -> Tensor:
        """User vectors [B, D] from the per-news inputs [U, D'] of histories `history` [B, N]
        (indices into them; mask [B, N]), in `groups` groups of similar history length, each
        cut to its longest: about half of a training batch's 50 history slots are padding
        (MIND's median history is ~19 clicks), and self-attention costs the square of the
        width. Batches of fewer than `groups * min_rows` histories take one call."""
        encode = self.user_encoder.encode_inputs
        if len(history) < groups * min_rows:
            return encode(take(inputs, history), mask)
        order, parts = length_groups(mask.sum(1), groups=groups)
        users = []
        for part in parts:
            part_mask = mask[part]
            # Widths rounded up to a multiple of 8 (at most 7 per group over a run): in bf16 on
            # CPU every new shape costs a cached oneDNN primitive (engine/packing.py, bucket).
            cut = used_columns(part_mask, step=8)
            users.append(encode(take(inputs, history[part][:, cut]), part_mask[:, cut]))
        return unsort(torch.cat(users), order)

    def click_scores(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor
    ) -> Tensor:
        """Logits [B, C] from clicked-news vectors [B, N, D] and candidate vectors [B, C, D]."""
        u = self.user_vector(history, history_mask, user, candidates)  # [B, D] or [B, C, D]
        return self.click_predictor(u, candidates)  # NRMS eq. 11: y = u^T r_c, [B, C]

    def user_vector(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        """u [B, D] ([B, C, D] for a candidate-aware encoder), the empty-history fallback added."""
        aware = candidates if self.candidate_aware else None
        u = self.user_encoder(history, history_mask, user, aware)
        fallback = self.empty_history_term(history_mask)  # [B, D]
        return u + (fallback.unsqueeze(1) if u.dim() == 3 else fallback)

    def empty_history_term(self, history_mask: Tensor) -> Tensor:
        """[B, D]: the learned fallback where a history is empty, zeros elsewhere."""
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
