"""Masks, dropout, word embeddings and the MLP: the pieces every other layer builds on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.data.info import DataInfo
from newsrec.models.engine.kernels import dropout as fast_dropout


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over `dim` where masked entries get exactly zero weight.

    A finite fill value (not -inf) keeps an all-masked row finite: its softmax is uniform, and
    the final multiplication by the mask turns it into all zeros, so whatever is pooled with
    these weights becomes the zero vector, and no NaN reaches the gradients.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [..., L, D] over the real positions of mask [..., L]; zeros if there are none."""
    m = mask.unsqueeze(-1).to(x.dtype)  # [..., L, 1]
    return (x * m).sum(-2) / m.sum(-2).clamp(min=1.0)  # [..., D]


class FastPath:
    """A layer that can compute its function with less work (engine/kernels.py). The engine
    switches it on once, when a model is built with engine=fast; off, the layer computes the
    paper's equations as written."""

    fast: bool = False

    def set_fast(self, enabled: bool) -> None:
        self.fast = enabled


class Dropout(nn.Module, FastPath):
    """Inverted dropout. Fast: on a CPU, a mask from 16 random bits per element, a tenth of
    torch's cost with the same expectation (engine/kernels.py, `dropout`)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.fast:
            return fast_dropout(x, self.p)
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WordEmbedding(nn.Module):
    """Word ids -> vectors, then dropout. Id 0 is padding (a zero vector that is never trained).

    Initialised from `data.word_embeddings` (e.g. GloVe) when given, then fine-tuned, as in
    NRMS; its width must then equal `dim`, so a config can never silently disagree with the
    pretrained vectors. Takes ids of any shape: [n, L] padded or [T] packed words.
    """

    def __init__(self, data: DataInfo, dim: int = 300, dropout: float = 0.2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(data.vocab_size, dim, padding_idx=0)
        if data.word_embeddings is not None:
            pretrained = data.word_embeddings
            if tuple(pretrained.shape) != (data.vocab_size, dim):
                raise ValueError(
                    f"pretrained word embeddings have shape {tuple(pretrained.shape)}, but the "
                    f"model asks for ({data.vocab_size}, {dim}); set the news encoder's "
                    f"word_dim={pretrained.shape[-1]} or use embeddings of width {dim}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
                self.embedding.weight[0].zero_()  # padding stays zero whatever the file says
        self.dropout = Dropout(dropout)
        self.dim = dim

    def forward(self, words: Tensor) -> Tensor:
        x = self.embedding(words)  # [..., L] -> [..., L, dim]
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # The next product casts to bf16 anyway: casting first halves dropout's traffic.
            x = x.to(torch.get_autocast_dtype(device))
        return self.dropout(x)


class MLP(nn.Module):
    """Linear -> ReLU -> dropout for each hidden size, then a final linear to `out_dim`."""

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for hidden in hidden_dims:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
