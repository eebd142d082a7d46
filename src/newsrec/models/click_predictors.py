"""Click predictors: user vector(s) and candidate vectors -> one logit per candidate.

Interface: `__init__(dim, ...)`; `forward(user [B, D] or [B, C, D], candidates [B, C, D])
-> [B, C]`. A [B, C, D] user comes from a candidate-aware user encoder (DKN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from newsrec.models.layers import MLP


class DotProduct(nn.Module):
    """y_c = u^T r_c (NRMS eq. 11; also NPA, LSTUR, NAML, GRU). No parameters."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        if user.dim() == 2:
            return (candidates @ user.unsqueeze(-1)).squeeze(-1)  # eq. 11: [B, C]
        return (user * candidates).sum(-1)  # one user vector per candidate: [B, C]


class MLPClickPredictor(nn.Module):
    """DKN's click predictor: a small DNN on [user; candidate] -> logit."""

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (300,), dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = MLP(2 * dim, list(hidden_dims), 1, dropout)

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        if user.dim() == 2:
            user = user.unsqueeze(1).expand_as(candidates)  # [B, C, D]
        return self.mlp(torch.cat([user, candidates], dim=-1)).squeeze(-1)  # [B, C]
