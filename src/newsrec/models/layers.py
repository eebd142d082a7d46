"""Building blocks shared by every model: embeddings, attention, CNNs, GRU, MLP.

Encoders in `news_encoders.py` / `user_encoders.py` are thin compositions of these. Every
layer that reads a sequence takes a boolean `mask` (True = real item) and guarantees:
padded positions never take part (zero attention weight, excluded from pooling, zeroed before
convolutions), and an all-padding sequence gives a finite output (zeros unless documented).
Shapes: B = batch (or news rows), L = sequence length (words or history slots), D = features.

Each `forward` is the paper's padded computation. Faster ways to compute the same thing
(packing, device kernels, evaluation caches) live beside them in `newsrec.models.engine`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.data.info import DataInfo


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over `dim` where masked entries get exactly zero weight.

    A finite fill value (not -inf) keeps an all-masked row finite: its softmax is uniform, and
    the final multiplication by the mask turns it into all zeros, so whatever is pooled with
    these weights becomes the zero vector, and no NaN reaches the gradients.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


class Dropout(nn.Module):
    """Inverted dropout (`F.dropout`), with room for a faster mask on some devices.

    `kernel` is set once by the engine when the model is built or moved
    (`newsrec.models.engine.use_fast_kernels`): on the CPU, a mask from 16 random bits per
    element, a tenth of torch's cost and the same expectation. None: torch's dropout.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p
        self.kernel: Callable[[Tensor, float], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.kernel is not None:
            return self.kernel(x, self.p)
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [..., L, D] over the real positions of mask [..., L]; zeros if there are none."""
    m = mask.unsqueeze(-1).to(x.dtype)  # [..., L, 1]
    return (x * m).sum(-2) / m.sum(-2).clamp(min=1.0)  # [..., D]


class WordEmbedding(nn.Module):
    """Word ids -> vectors, then dropout. Id 0 is padding (a zero vector that is never trained).

    Initialised from `data.word_embeddings` (e.g. GloVe) when given, then fine-tuned, as in
    NRMS; its width must then equal `dim`, so a config can never silently disagree with the
    pretrained vectors.
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


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention of NRMS (eq. 1-2 for words, 6-7 for news).

    The paper's bilinear score e_i^T Q_k e_j is written as a query projection dotted with a
    key projection, as the official code does. Projections have no bias and there is no
    output projection (the paper concatenates the heads), so the layer has 3 * in_dim *
    heads * head_dim parameters: 3 * 300 * 256 = 230,400 for NRMS's word level. Scores are
    scaled by 1/sqrt(head_dim): the paper is silent, the official NRMS code scales. Masked
    keys get zero weight; a query whose keys are all masked gets a zero output.
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
        # The same attention computed faster for the device (keys-first products on CPU, the
        # fused kernel elsewhere), set once by the engine when the model is built or moved
        # (`newsrec.models.engine.use_fast_kernels`). None: the equations below.
        self.kernel: Callable[..., Tensor] | None = None

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
        if self.kernel is not None and not return_weights:
            return self.kernel(qkv, mask, self.heads, self.head_dim, p)
        q, k, v = (
            t.view(B, L, self.heads, self.head_dim).transpose(1, 2)  # [B, h, L, hd]
            for t in qkv.split(self.output_dim, dim=-1)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # eq. 1 / 6: [B, h, L, L]
        weights = masked_softmax(scores, mask[:, None, None, :])  # eq. 1 / 6: over the keys
        out = F.dropout(weights, p, self.training) @ v  # eq. 2 / 7: [B, h, L, hd]
        out = out.transpose(1, 2).reshape(B, L, self.output_dim)  # concatenate the heads
        return (out, weights) if return_weights else out


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
        query = F.relu(self.preference_query(user))  # [B, query_dim]
        key = torch.tanh(self.key(query))  # [B, D]
        scores = (x @ key.unsqueeze(-1)).squeeze(-1)  # [B, L]
        weights = masked_softmax(scores, mask)
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights


class WordCNN(nn.Module):
    """1-D convolution over word vectors with 'same' padding, ReLU, dropout (NPA, LSTUR, NAML).

    Padded positions are zeroed before the convolution, so a real word next to padding sees
    exactly what it sees at the title's edge, whatever the padding vectors hold.
    Parameters: in_dim * window * filters + filters (300 * 3 * 400 + 400 = 360,400).
    """

    def __init__(
        self, in_dim: int, filters: int = 400, window: int = 3, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, filters, window, padding="same")
        self.dropout = Dropout(dropout)
        self.output_dim = filters

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, in_dim], mask [B, L] -> [B, L, filters]."""
        x = x * mask.unsqueeze(-1).to(x.dtype)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # Conv1d wants [B, C, L]
        return self.dropout(F.relu(x))


class KnowledgeAwareCNN(nn.Module):
    """DKN's KCNN: word and transformed entity vectors stacked as two channels, multi-window
    convolution, max over time, concatenated over windows.

    The entity transform g(e) = tanh(M e + b) maps entity vectors to the word width so the two
    can be aligned as channels. A word without an entity (id 0) gets a zero entity channel,
    like DKN's alignment of zero vectors to non-entity words. DKN's optional context channel
    is left out. Windows run over the title padded with zeros on the right, so every real word
    starts one window; max-over-time ignores windows that start on padding.
    Parameters: entity_dim * word_dim + word_dim (g) + sum_h (2 * h * word_dim * filters +
    filters).
    """

    def __init__(
        self,
        word_dim: int = 300,
        entity_dim: int = 100,
        filters: int = 100,
        windows: Sequence[int] = (1, 2, 3),
    ) -> None:
        super().__init__()
        self.entity_transform = nn.Linear(entity_dim, word_dim)  # g(e) = tanh(M e + b)
        self.windows = tuple(windows)
        self.convs = nn.ModuleList(nn.Conv2d(2, filters, (h, word_dim)) for h in self.windows)
        self.output_dim = filters * len(self.windows)

    def forward(
        self, words: Tensor, entities: Tensor, word_mask: Tensor, entity_mask: Tensor
    ) -> Tensor:
        """words [B, L, Dw], entities [B, L, De], masks [B, L] -> [B, filters * windows]."""
        w = words * word_mask.unsqueeze(-1).to(words.dtype)
        e = torch.tanh(self.entity_transform(entities))
        e = e * (entity_mask & word_mask).unsqueeze(-1).to(e.dtype)
        x = torch.stack([w, e], dim=1)  # [B, 2, L, Dw]
        pooled = []
        for h, conv in zip(self.windows, self.convs, strict=True):
            c = F.relu(conv(F.pad(x, (0, 0, 0, h - 1)))).squeeze(-1)  # [B, filters, L]
            c = c.masked_fill(~word_mask.unsqueeze(1), 0.0)  # ReLU >= 0, so 0 never wins a max
            pooled.append(c.amax(dim=-1))  # max over time: [B, filters]
        return torch.cat(pooled, dim=-1)


class MaskedGRU(nn.Module):
    """A GRU over the real items of a padded sequence; returns the last real item's state.

    Padding may sit anywhere: real items are first moved to the front (order kept), the GRU
    runs over the left-aligned sequence, and the state after the last real item is gathered.
    Being causal, that state never saw padding. An all-padding sequence returns `h0` (zeros
    when not given). Parameters: 3 * (in_dim * hidden + hidden * hidden + 2 * hidden).
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)
        self.output_dim = hidden

    def forward(self, x: Tensor, mask: Tensor, h0: Tensor | None = None) -> Tensor:
        """x [B, N, D], mask [B, N], h0 [B, hidden] or None -> [B, hidden]."""
        B, N, D = x.shape
        # stable sort on "is padding" keeps the real items' order and puts them first
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # [B, N]
        x = x.gather(1, order.unsqueeze(-1).expand(B, N, D))
        if h0 is None:
            h0 = x.new_zeros(B, self.output_dim)
        states, _ = self.gru(x, h0.unsqueeze(0).contiguous())  # [B, N, hidden]
        lengths = mask.sum(1)  # [B]
        index = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, self.output_dim)
        last = states.gather(1, index)  # [B, 1, hidden]
        return torch.where((lengths > 0).unsqueeze(-1), last.squeeze(1), h0)


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
        w_h, w_c = self.hidden.weight.split(self.dim, dim=1)
        h = F.linear(history, w_h)  # [B, N, hidden]
        c = F.linear(candidates, w_c, self.hidden.bias)  # [B, C, hidden]
        scores = self.score(F.relu(c.unsqueeze(2) + h.unsqueeze(1))).squeeze(-1)  # [B, C, N]
        weights = masked_softmax(scores, mask.unsqueeze(1))
        return weights @ history, weights  # [B, C, D]


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
