"""The contracts of a model's parts: what a news encoder and a user encoder declare and do.

A model is `NewsEncoder` + `UserEncoder` + click predictor, composed by config
(conf/model/*.yaml, `_target_` + parameters). The Recommender and the engine rely on the
capabilities declared here and on nothing else: a new encoder is one subclass plus one yaml
file (README, "Add a model"). Each part's `forward` is the paper's padded computation; the
other methods are what the engine (engine=fast) calls instead, each with a default that is
right for any encoder, so a new encoder needs none of them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from newsrec.data.info import NewsInputs


class NewsEncoder(nn.Module):
    """News-table features of n news -> one vector per news, [n, output_dim].

    Subclasses take `data` (a `DataInfo`) as their first argument, with the paper's values as
    defaults for the rest, set `output_dim`, and implement `forward(news, user=None)`, where
    `news[key]` holds rows of the news table for each key in `features` (see
    `newsrec.data.info`). Word id 0 is padding: masks are derived from it, and an
    all-padding title gives a finite vector.
    """

    #: news-table keys `forward` reads ("title", "abstract", "category", "subcategory",
    #: "title_entities"); only these are gathered for it. An encoder whose keys depend on
    #: its settings overrides `declare` and sets `self.features` from it.
    features: tuple[str, ...] = ("title",)
    #: True when the vector depends on the reading user (NPA): `forward` then gets `user`
    #: [n], and evaluation cannot encode each news once for everyone
    needs_user: bool = False
    #: True when the encoder reads the user's ID (an embedding of it: NPA)
    reads_user: bool = False
    output_dim: int

    @classmethod
    def declare(cls, **settings) -> NewsInputs:
        """What an encoder built with `settings` (its config's keys) reads, known before the
        data is: the data side preprocesses exactly that (newsrec.data.info.NewsInputs)."""
        return NewsInputs(features=cls.features)

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        """`forward` computed on the real words only (the engine's path); the default is
        `forward` itself, right for encoders without word-level layers."""
        return self.forward(news, user)

    # -- user-dependent encoders (needs_user): the user-independent part once per news ------
    def user_independent(self, news: dict[str, Tensor]) -> Any:
        """The part of the vectors of news rows `news` that does not depend on the user
        (NPA: the title CNN), computed once per distinct news. Default: the features."""
        return news

    def personalize(self, shared: Any, index: Tensor, user: Tensor) -> Tensor:
        """Vectors [P, D] of P (news, user) pairs: news `index` [P] into the rows `shared`
        was computed for (`user_independent`), users `user` [P]."""
        return self.forward_packed({k: v[index] for k, v in shared.items()}, user)

    def set_news_table(self, table: dict[str, Tensor]) -> None:
        """The news table the encoder's rows will index from now on. Encoders that keep
        per-news work between calls (the PLM encoder's frozen layers) drop it here."""

    def word_attention(self, title: Tensor) -> Tensor:
        """Weights [n, L] the encoder gives each word of titles [n, L] (for pictures:
        `newsrec.serving.visualize`); zeros at padding."""
        raise ValueError(f"{type(self).__name__} has no word attention to show")


class UserEncoder(nn.Module):
    """The vectors of a user's clicked news -> one user vector (or one per candidate).

    Subclasses take `data` and `news_dim` as their first arguments, set `output_dim` equal to
    `news_dim` (the click predictor takes inner products; derive widths from `news_dim` and
    raise if a configured width disagrees), and implement `encode`. Padded history slots
    never take part; each subclass documents what an empty history gives.
    """

    #: True when the user vector depends on the candidate (DKN): `forward` then needs the
    #: candidates and returns one user vector per candidate, [B, C, D]
    candidate_aware: bool = False
    #: True when the encoder reads the user's ID (an embedding of it: NPA, LSTUR)
    reads_user: bool = False
    output_dim: int

    def forward(
        self,
        history: Tensor,
        history_mask: Tensor,
        user: Tensor,
        candidates: Tensor | None = None,
    ) -> Tensor:
        """history [B, N, D] (clicked news vectors, padded), history_mask [B, N] (True = a
        real click), user [B] (user-table rows, 0 = unseen), candidates [B, C, D] or None
        -> [B, D], or [B, C, D] when `candidate_aware`."""
        if self.candidate_aware and candidates is None:
            raise ValueError(f"{type(self).__name__} is candidate-aware: pass the candidates")
        return self.encode(history, history_mask, user, candidates)

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        """The encoder's computation; see `forward` for the arguments and shapes."""
        raise NotImplementedError

    # -- the engine's path: the per-news part once per distinct news ------------------------
    def news_inputs(self, vectors: Tensor) -> Tensor:
        """The part of `encode` that reads one clicked news at a time: news vectors [n, D] ->
        [n, D'] (NRMS: eq. 6's Q, K, V). The engine runs it once per distinct news of a
        batch or of an evaluated split, not once per history slot. Default: the vectors."""
        return vectors

    def encode_inputs(
        self, inputs: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        """`encode` from `news_inputs` gathered per history slot [B, N, D']. Default: `encode`
        (its inputs are the news vectors)."""
        return self.encode(inputs, history_mask, user, candidates)
