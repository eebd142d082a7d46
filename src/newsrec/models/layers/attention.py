"""Attention layers: NRMS's multi-head self-attention and additive attention, the ablations'
mean pooling, NPA's personalized attention and DKN's candidate-aware attention.

Each `forward` is the paper's padded computation. Layers that the engine runs on packed
items (only the real words of a batch, `engine.packing.Packed`) define `packed` for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.models.engine.kernels import attention as fast_attention
from newsrec.models.engine.packing import Packed, bucketed, pad, unpad
from newsrec.models.layers.basic import FastPath, masked_softmax


class MultiHeadSelfAttention(nn.Module, FastPath):
    """Multi-head self-attention of NRMS (eq. 1-2 for words, 6-7 for news).

    The paper's bilinear score e_i^T Q_k e_j is written as a query projection dotted with a
    key projection, as the official code does. Projections have no bias and there is no
    output projection (the paper concatenates the heads), so the layer has 3 * in_dim *
    heads * head_dim parameters: 3 * 300 * 256 = 230,400 for NRMS's word level. Scores are
    scaled by 1/sqrt(head_dim): the paper is silent, the official NRMS code scales. Masked
    keys get zero weight; a query whose keys are all masked gets a zero output. Fast: the
    same equations by the device's fastest kernel (`engine.kernels.attention`).
    """

    def __init__(
        self,
        in_dim: int,
        heads: int = 16,
        head_dim: int = 16,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.output_dim = heads * head_dim
        self.qkv = nn.Linear(in_dim, 3 * self.output_dim, bias=bias)  # Q_k, K_k, V_k of all heads
        self.dropout = dropout  # on the attention weights; 0 in NRMS

    def forward(
        self, x: Tensor, mask: Tensor, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x [B, L, in_dim], mask [B, L] -> [B, L, heads * head_dim] (and weights [B, h, L, L])."""
        qkv = self.qkv(x)  # [B, L, 3 * h * hd]: Q_k e_i, K_k e_j, V_k e_j of every head k
        return self.attend(qkv, mask, return_weights)

    def attend(
        self, qkv: Tensor, mask: Tensor, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The attention from the projections qkv [B, L, 3 * h * hd] (see `forward`)."""
        B, L, _ = qkv.shape
        p = self.dropout if self.training else 0.0
        if self.fast and not return_weights:
            return fast_attention(qkv, mask, self.heads, self.head_dim, p)
        q, k, v = (
            t.view(B, L, self.heads, self.head_dim).transpose(1, 2)  # [B, h, L, hd]
            for t in qkv.split(self.output_dim, dim=-1)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # eq. 1 / 6: [B, h, L, L]
        weights = masked_softmax(scores, mask[:, None, None, :])  # eq. 1 / 6: over the keys
        out = F.dropout(weights, p, self.training) @ v  # eq. 2 / 7: [B, h, L, hd]
        out = out.transpose(1, 2).reshape(B, L, self.output_dim)  # concatenate the heads
        return (out, weights) if return_weights else out

    def packed(self, x: Tensor, packed: Packed) -> Tensor:
        """The layer over packed items x [T, in_dim] -> [T, heads * head_dim].

        The projection, the layer's largest product, runs once over the real items; the
        attention pads one group of similar-length rows at a time.
        """
        qkv = bucketed(self.qkv, x)  # [T, 3 * h * hd]
        # split, not slicing: a slice's gradient is a zero-filled [T, 3 * h * hd] per group
        groups = qkv.split([t.stop - t.start for t in packed.tokens])
        parts = [
            unpad(self.attend(pad(part, index, mask.shape), mask), index)
            for part, mask, index in zip(groups, packed.masks, packed.indices, strict=True)
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]


class AdditiveAttention(nn.Module):
    """Additive attention pooling (NRMS eq. 3-5 for words, 8-10 for news).

    a_i = q^T tanh(V h_i + v); alpha = softmax(a) over real positions; r = sum_i alpha_i h_i.
    Parameters: in_dim * query_dim + query_dim (V, v) + query_dim (q). All-masked -> zeros.
    """

    def __init__(self, in_dim: int, query_dim: int = 200) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, query_dim)  # V, v
        # Glorot-uniform, as Keras initialises the [query_dim, 1] query of the official code.
        bound = math.sqrt(6.0 / (query_dim + 1))
        self.query = nn.Parameter(torch.empty(query_dim).uniform_(-bound, bound))  # q
        self.output_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]."""
        weights = masked_softmax(self.score(x), mask)  # eq. 4 / 9
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights  # eq. 5 / 10: [B, D]

    def score(self, x: Tensor) -> Tensor:
        """a_i = q^T tanh(V h_i + v) (eq. 3 / 8): x [..., D] -> [...], each item on its own."""
        return torch.tanh(self.projection(x)) @ self.query

    def packed(self, x: Tensor, packed: Packed) -> tuple[Tensor, Tensor]:
        """Packed items x [T, D] -> pooled [n, D], weights [n, L]."""
        weights = masked_softmax(packed.pad_scores(bucketed(self.score, x)), packed.mask)
        return packed.pool(x, weights), weights  # eq. 3-5


class MeanPooling(nn.Module):
    """Mean over real positions: the 'no attention' pooling of the NRMS ablations (Fig. 3).

    Same interface as AdditiveAttention; the weights are 1/count on real positions.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.output_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]."""
        weights = self.weights(mask, x.dtype)
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights

    def packed(self, x: Tensor, packed: Packed) -> tuple[Tensor, Tensor]:
        """Packed items x [T, D] -> pooled [n, D], weights [n, L]."""
        weights = self.weights(packed.mask, x.dtype)
        return packed.pool(x, weights), weights

    @staticmethod
    def weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
        """1 / count on the real positions of mask [B, L], zeros elsewhere."""
        m = mask.to(dtype)
        return m / m.sum(-1, keepdim=True).clamp(min=1.0)


def pooling_layer(kind: str, in_dim: int, query_dim: int = 200) -> AdditiveAttention | MeanPooling:
    """'additive' (NRMS) or 'mean' (the ablations' no-attention pooling)."""
    if kind == "additive":
        return AdditiveAttention(in_dim, query_dim)
    if kind == "mean":
        return MeanPooling(in_dim)
    raise ValueError(f"unknown pooling {kind!r}; expected 'additive' or 'mean'")


class PersonalizedAttention(nn.Module):
    """NPA's personalized attention: the attention query comes from the user-ID embedding.

    q = ReLU(V_q e_u + v_q) (preference query, query_dim); k = tanh(W_p q + b_p) (in_dim);
    a_i = h_i^T k; alpha = softmax(a); r = sum_i alpha_i h_i. The user embedding itself lives
    in the encoder, so this layer has user_dim * query_dim + query_dim + query_dim * in_dim +
    in_dim parameters (100,600 for NPA's 100 -> 200 -> 400).
    """

    def __init__(self, in_dim: int, user_dim: int = 100, query_dim: int = 200) -> None:
        super().__init__()
        self.preference_query = nn.Linear(user_dim, query_dim)
        self.key = nn.Linear(query_dim, in_dim)
        self.output_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor, user: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, D], mask [B, L], user embedding [B, user_dim] -> [B, D], weights [B, L]."""
        key = self.user_key(user)  # [B, D]
        scores = (x @ key.unsqueeze(-1)).squeeze(-1)  # [B, L]
        weights = masked_softmax(scores, mask)
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights

    def user_key(self, user: Tensor) -> Tensor:
        """k = tanh(W_p ReLU(V_q e_u + v_q) + b_p): user embeddings [..., user_dim] -> [..., D]."""
        return torch.tanh(self.key(F.relu(self.preference_query(user))))

    def packed(self, x: Tensor, packed: Packed, key: Tensor) -> Tensor:
        """Packed items x [T, D] of n rows, each pooled with its own key [n, D] -> [n, D]."""
        scores = (x * key.index_select(0, packed.row)).sum(-1)  # a_i = h_i^T k: [T]
        weights = masked_softmax(packed.pad_scores(scores), packed.mask)
        return packed.pool(x, weights)


class CandidateAwareAttention(nn.Module):
    """DKN's attention: a small DNN on [clicked news; candidate] scores each clicked news.

    s_{k,j} = w^T ReLU(W [h_k; c_j] + b) + b'; weights = softmax over the real history slots;
    the user vector for candidate j is sum_k weight_{k,j} h_k. The first layer is applied to
    the two halves separately (W = [W_h, W_c]), which is the same function without building
    the [B, C, N, 2D] concatenation. Parameters: 2D * hidden + hidden + hidden + 1.
    """

    def __init__(self, dim: int, hidden: int = 100) -> None:
        super().__init__()
        self.hidden = nn.Linear(2 * dim, hidden)  # W, b over [h_k; c_j]
        self.score = nn.Linear(hidden, 1)  # w, b'
        self.dim = dim

    def forward(self, history: Tensor, mask: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """history [B, N, D], mask [B, N], candidates [B, C, D] -> [B, C, D], weights [B, C, N]."""
        h, c = self.halves(history, candidates)
        return self.attend(history, h, mask, c)

    def halves(self, history: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """W_h h_k [.., N, hidden] and W_c c_j + b [.., C, hidden]: each news on its own."""
        w_h, w_c = self.hidden.weight.split(self.dim, dim=1)
        return F.linear(history, w_h), F.linear(candidates, w_c, self.hidden.bias)

    def attend(self, history: Tensor, h: Tensor, mask: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """The attention from the halves (`halves`): -> [B, C, D], weights [B, C, N]."""
        # in place: the [B, C, N, hidden] sum is the layer's largest tensor
        scores = self.score(F.relu(c.unsqueeze(2) + h.unsqueeze(1), inplace=True)).squeeze(-1)
        weights = masked_softmax(scores, mask.unsqueeze(1))
        return weights @ history, weights  # [B, C, D]
