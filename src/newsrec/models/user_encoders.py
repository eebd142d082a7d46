"""User encoders: the vectors of a user's clicked news -> one user vector.

Each is a `UserEncoder` (models/base.py: `forward(history, history_mask, user,
candidates=None)`, `output_dim` equal to `news_dim`, `candidate_aware`) and implements
`encode`. Padded history slots never take part; what an empty history gives is documented
per encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.data.info import DataInfo
from newsrec.models.base import UserEncoder
from newsrec.models.layers import (
    AdditiveAttention,
    CandidateAwareAttention,
    MaskedGRU,
    MultiHeadSelfAttention,
    PersonalizedAttention,
    pooling_layer,
)


class SelfAttentionUserEncoder(UserEncoder):
    """NRMS user encoder: news self-attention (eq. 6-7) -> additive news attention (eq. 8-10).

    The self-attention output must be `news_dim` wide for the dot product, so `head_dim`
    defaults to news_dim / heads (256 / 16 = 16 for NRMS; 400 / 16 = 25 when the CNN news
    encoder is swapped in). `self_attention=False` / `pooling='mean'` give the news-level
    ablations of Figure 3. Empty history -> zero vector (every weight is zero).
    """

    def __init__(
        self,
        data: DataInfo,
        news_dim: int,
        self_attention: bool = True,
        heads: int = 16,  # paper: 16 heads x 16 dims
        head_dim: int | None = None,  # None: news_dim // heads
        pooling: str = "additive",
        query_dim: int = 200,  # paper: 200
    ) -> None:
        super().__init__()
        self.self_attention = None
        if self_attention:
            if head_dim is None:
                if news_dim % heads:
                    raise ValueError(
                        f"user self-attention: news_dim={news_dim} is not divisible by "
                        f"heads={heads}; pick heads that divide it"
                    )
                head_dim = news_dim // heads
            if heads * head_dim != news_dim:
                raise ValueError(
                    f"user self-attention gives heads*head_dim = {heads}*{head_dim} = "
                    f"{heads * head_dim} dims but news vectors have {news_dim}; the dot "
                    f"product needs them equal: leave head_dim unset or make them match"
                )
            self.self_attention = MultiHeadSelfAttention(news_dim, heads, head_dim)
        self.pooling = pooling_layer(pooling, news_dim, query_dim)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        x = history
        if self.self_attention is not None:
            x = self.self_attention(history, history_mask)  # eq. 6-7: [B, N, D]
        return self.pooling(x, history_mask)[0]  # eq. 8-10: [B, D]

    # Eq. 6's Q, K and V project each clicked news on its own: once per distinct news.
    def news_inputs(self, vectors: Tensor) -> Tensor:
        if self.self_attention is None:
            return vectors
        return self.self_attention.qkv(vectors)  # [n, 3D]

    def encode_inputs(
        self, inputs: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        x = inputs
        if self.self_attention is not None:
            x = self.self_attention.attend(inputs, history_mask)  # eq. 6-7 from Q, K, V
        return self.pooling(x, history_mask)[0]  # eq. 8-10


class AdditiveUserEncoder(UserEncoder):
    """NAML user encoder: additive attention over the clicked news. Empty history -> zeros."""

    def __init__(self, data: DataInfo, news_dim: int, query_dim: int = 200) -> None:
        super().__init__()
        self.attention = AdditiveAttention(news_dim, query_dim)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        return self.attention(history, history_mask)[0]  # [B, D]


class PersonalizedUserEncoder(UserEncoder):
    """NPA user encoder: personalized attention over the clicked news, query from the user ID.

    Empty history -> zero vector. User row 0 (unseen in training) has a zero embedding.
    """

    reads_user = True

    def __init__(
        self, data: DataInfo, news_dim: int, user_dim: int = 100, query_dim: int = 200
    ) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(data.num_users, user_dim, padding_idx=0)
        self.attention = PersonalizedAttention(news_dim, user_dim, query_dim)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        return self.attention(history, history_mask, self.user_embedding(user))[0]  # [B, D]


class GRUUserEncoder(UserEncoder):
    """GRU baseline (Okura et al., 2017): a GRU over the clicked news in time order; the user
    vector is the state after the most recent real click. Empty history -> zeros (h0 = 0).
    """

    def __init__(self, data: DataInfo, news_dim: int) -> None:
        super().__init__()
        self.gru = MaskedGRU(news_dim, news_dim)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        return self.gru(history, history_mask)  # [B, D]

    # The GRU's input gates read one clicked news at a time: once per distinct news.
    def news_inputs(self, vectors: Tensor) -> Tensor:
        return self.gru.input_gates(vectors)  # [n, 3D]

    def encode_inputs(
        self, inputs: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        return self.gru.recur(inputs, history_mask)  # [B, D]


class LSTURUserEncoder(UserEncoder):
    """LSTUR: short-term interest from a GRU over clicked news, long-term from the user ID.

    mode 'ini': the user embedding (news_dim wide) is the GRU's initial state; the user
    vector is the last state. Empty history -> the long-term embedding itself.
    mode 'con': user vector = [long-term embedding; GRU last state] with the two halves
    summing to news_dim (the GRU gets news_dim // 2 units, the embedding the rest), so it
    still matches the candidates' width without a projection. Empty history -> [u_l; 0].
    During training the long-term embedding is zeroed per user with probability
    `user_mask_prob` (LSTUR's p = 0.5), so the model also learns to serve users with no
    long-term vector; user row 0 (unseen in training) has a zero embedding, which is exactly
    that case at test time.
    """

    reads_user = True

    def __init__(
        self,
        data: DataInfo,
        news_dim: int,
        mode: str = "ini",
        user_mask_prob: float = 0.5,  # LSTUR paper: p = 0.5
    ) -> None:
        super().__init__()
        if mode not in ("ini", "con"):
            raise ValueError(f"LSTUR mode must be 'ini' or 'con', got {mode!r}")
        self.mode = mode
        self.user_mask_prob = user_mask_prob
        gru_dim = news_dim if mode == "ini" else news_dim // 2
        long_dim = news_dim if mode == "ini" else news_dim - gru_dim
        self.user_embedding = nn.Embedding(data.num_users, long_dim, padding_idx=0)
        self.gru = MaskedGRU(news_dim, gru_dim)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        long_term = self.long_term(user)
        if self.mode == "ini":
            return self.gru(history, history_mask, h0=long_term)  # [B, D]
        short_term = self.gru(history, history_mask)  # [B, D // 2]
        return torch.cat([long_term, short_term], dim=-1)  # [B, D]

    # The GRU's input gates read one clicked news at a time: once per distinct news.
    def news_inputs(self, vectors: Tensor) -> Tensor:
        return self.gru.input_gates(vectors)  # [n, 3 * gru_dim]

    def encode_inputs(
        self, inputs: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        long_term = self.long_term(user)
        if self.mode == "ini":
            return self.gru.recur(inputs, history_mask, h0=long_term)  # [B, D]
        short_term = self.gru.recur(inputs, history_mask)  # [B, D // 2]
        return torch.cat([long_term.to(short_term.dtype), short_term], dim=-1)  # [B, D]

    def long_term(self, user: Tensor) -> Tensor:
        """u_l [B, long_dim], zeroed per user with probability `user_mask_prob` in training."""
        long_term = self.user_embedding(user)
        if self.training and self.user_mask_prob > 0:
            keep = torch.rand(user.shape, device=user.device) >= self.user_mask_prob
            long_term = long_term * keep.unsqueeze(-1).to(long_term.dtype)
        return long_term


class CandidateAwareUserEncoder(UserEncoder):
    """DKN user encoder: attention over clicked news weighted by relevance to each candidate.

    Returns one user vector per candidate, [B, C, D]. Empty history -> zeros.
    """

    candidate_aware = True

    def __init__(self, data: DataInfo, news_dim: int, hidden: int = 100) -> None:
        super().__init__()
        self.attention = CandidateAwareAttention(news_dim, hidden)
        self.output_dim = news_dim

    def encode(
        self, history: Tensor, history_mask: Tensor, user: Tensor, candidates: Tensor | None
    ) -> Tensor:
        return self.attention(history, history_mask, candidates)[0]  # [B, C, D]
