"""Building blocks shared by every model: embeddings, attention, CNNs, GRU, MLP.

Encoders in `news_encoders.py` / `user_encoders.py` are thin compositions of these. Every
layer that reads a sequence takes a boolean `mask` (True = real item) and guarantees:
padded positions never take part (zero attention weight, excluded from pooling, zeroed before
convolutions), and an all-padding sequence gives a finite output (zeros unless documented).
Shapes: B = batch (or news rows), L = sequence length (words or history slots), D = features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def pack(mask: Tensor) -> Tensor:
    """Flat positions [T] of the real items of mask [B, L]: what `unpad` keeps, `pad` restores."""
    return mask.reshape(-1).nonzero().squeeze(1)


def pad(x: Tensor, index: Tensor, shape: tuple[int, int]) -> Tensor:
    """Packed rows x [T, D] at flat positions `index` -> [B, L, D] with zeros elsewhere."""
    B, L = shape
    return x.new_zeros(B * L, x.shape[-1]).index_copy(0, index, x).view(B, L, -1)


def unpad(x: Tensor, index: Tensor) -> Tensor:
    """x [B, L, D] -> the rows [T, D] at flat positions `index`."""
    return x.reshape(-1, x.shape[-1]).index_select(0, index)


class Packed:
    """A batch of sequences (mask [n, L]) held as its real items only, [T, D] in row order.

    `Packed.sorted(mask, rows_per_group)` sorts the rows by length first and says how to put
    results back in the input order.

    Per-item layers (embeddings, projections, dropout) run on the T real items. Layers that
    need whole sequences (self-attention) pad one group of rows at a time, each cut to its
    own longest row: with rows sorted by length, the groups hold similar lengths and little
    padding. Group g covers rows `rows[g]`, items `tokens[g]` (contiguous, as packing is row
    by row), and pads with its own `masks[g]` / `indices[g]`.
    """

    def __init__(self, mask: Tensor, groups: int = 1) -> None:
        self.mask = mask
        self.index = pack(mask)  # [T]
        self.row = torch.div(self.index, mask.shape[1], rounding_mode="floor")  # row of each item
        ends = mask.sum(1).cumsum(0).tolist()
        self.rows, self.tokens, self.masks, self.indices = [], [], [], []
        bounds = torch.linspace(0, mask.shape[0], groups + 1).round().long().tolist()
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if a == b:
                continue
            sub = mask[a:b]
            used = sub.any(0).nonzero()
            # cut to the columns in use: right (titles) or left padding (histories)
            sub = sub[:, int(used.min()) : int(used.max()) + 1] if len(used) else sub[:, :1]
            self.rows.append(slice(a, b))
            self.tokens.append(slice(ends[a - 1] if a else 0, ends[b - 1]))
            self.masks.append(sub)
            self.indices.append(pack(sub))

    @classmethod
    def sorted(
        cls, mask: Tensor, rows_per_group: int, max_groups: int = 6
    ) -> tuple[Packed, Tensor]:
        """Packed rows of `mask` sorted by length, and `order` (sorted position -> input row)."""
        order = torch.argsort(mask.sum(1), stable=True)
        groups = min(max_groups, max(1, len(order) // rows_per_group))
        return cls(mask[order], groups), order

    @staticmethod
    def unsort(x: Tensor, order: Tensor) -> Tensor:
        """Rows computed in sorted order back in the input order."""
        return torch.empty_like(x).index_copy_(0, order, x)

    def pad_scores(self, scores: Tensor) -> Tensor:
        """One value per item [T] -> [n, L], zeros at padding."""
        return pad(scores.unsqueeze(-1), self.index, self.mask.shape).squeeze(-1)

    def pool(self, x: Tensor, weights: Tensor) -> Tensor:
        """sum_i weights[r, i] x_i over each row r's items: x [T, D], weights [n, L] -> [n, D]."""
        w = weights.reshape(-1).index_select(0, self.index).unsqueeze(-1)  # [T, 1]
        out = x.new_zeros(self.mask.shape[0], x.shape[-1])
        return out.index_add(0, self.row, (x * w).to(out.dtype))


class _CheapMaskDropout(torch.autograd.Function):
    """Inverted dropout whose mask comes from 16 random bits per element (see `Dropout`)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        n = x.numel()
        dropped = round(p * 65536)  # of the 65,536 values a 16-bit draw can take
        # random_(-2**63, None) fills all 64 bits (plain random_() leaves the top bit 0).
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
        # The mask as x's dtype, scaled by the exact inverse keep rate. Going through uint8
        # and multiplying is ~10x faster on CPU than torch.where or bool arithmetic.
        scale = keep.view(torch.uint8).to(x.dtype).mul_(65536 / (65536 - dropped))
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class Dropout(nn.Module):
    """Inverted dropout; on the CPU its mask costs a tenth of torch's.

    torch's CPU dropout draws a Bernoulli sample per element: measured here, that was a
    quarter of an NRMS training step in bf16 (benchmarks/RESULTS.md). This draws 64 random
    bits per four elements instead. The drop rate is `p` rounded to a multiple of 1/65,536
    (0.2 -> 0.19999695) and kept values are scaled by the exact inverse keep rate, so the
    expected output equals the input. Masks come from torch's generator, so `manual_seed`
    reproduces them. On other devices this is `F.dropout` (fused there).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return _CheapMaskDropout.apply(x, self.p)

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

    def forward(
        self, x: Tensor, mask: Tensor, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x [B, L, in_dim], mask [B, L] -> [B, L, heads * head_dim] (and weights [B, h, L, L])."""
        return self.attend(self.qkv(x), mask, return_weights)

    def forward_packed(self, x: Tensor, packed: Packed) -> Tensor:
        """The real items only: x [T, in_dim] -> [T, heads * head_dim].

        The projection, the layer's largest product, runs once over the real items; the
        attention pads one group of similar-length rows at a time (see `Packed`).
        """
        qkv = self.qkv(x)  # [T, 3 * h * hd]
        # split, not slicing: a slice's gradient is a zero-filled [T, 3 * h * hd] per group
        groups = qkv.split([t.stop - t.start for t in packed.tokens])
        parts = [
            unpad(self.attend(pad(part, index, mask.shape), mask), index)
            for part, mask, index in zip(groups, packed.masks, packed.indices, strict=True)
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def attend(
        self, qkv: Tensor, mask: Tensor, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attention from projected items: qkv [B, L, 3 * h * hd] (`self.qkv(x)`), mask [B, L]."""
        B, L, _ = qkv.shape
        q, k, v = qkv.split(self.output_dim, dim=-1)  # 3 x [B, L, h*hd]
        q, k, v = (t.view(B, L, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        # Masked keys get the float minimum as an additive bias: zero weight after the
        # softmax, and an all-masked row stays finite (uniform); its output is zeroed below.
        if return_weights or q.device.type == "cpu":
            # Plain products on CPU: for titles' small L x L blocks the fused kernel was 2x
            # (float32) to 10x (bf16) slower here. The scores are laid out keys-first, so the
            # softmax runs over dim -2, which torch's CPU kernel vectorises across queries:
            # 20-25% faster for L = 8-23 than over the last dim (benchmarks/RESULTS.md).
            # The scale goes on q and the mask is one addition: no extra pass over L x L.
            bias = torch.zeros((B, 1, L, 1), dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(~mask[:, None, :, None], torch.finfo(q.dtype).min)
            scores = k @ (q * (1.0 / math.sqrt(self.head_dim))).transpose(-2, -1) + bias
            weights = torch.softmax(scores, dim=-2).transpose(-2, -1)  # eq. 1 / 6: [B, h, L, L]
            out = F.dropout(weights, p, self.training) @ v  # eq. 2 / 7: [B, h, L, hd]
        else:
            bias = torch.zeros((B, 1, 1, L), dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(~mask[:, None, None, :], torch.finfo(q.dtype).min)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        real = mask.any(-1).to(out.dtype)[:, None, None, None]  # 0 where every key is masked
        out = out * real
        out = out.transpose(1, 2).reshape(B, L, self.output_dim)  # concatenate heads
        return (out, weights * real) if return_weights else out


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
        scores = torch.tanh(self.projection(x)) @ self.query  # eq. 3 / 8: [B, L]
        weights = masked_softmax(scores, mask)  # eq. 4 / 9
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights  # eq. 5 / 10: [B, D]

    def forward_packed(self, x: Tensor, packed: Packed) -> tuple[Tensor, Tensor]:
        """The real items only: x [T, D] -> pooled [B, D], weights [B, L]."""
        scores = torch.tanh(self.projection(x)) @ self.query  # [T]
        weights = masked_softmax(packed.pad_scores(scores), packed.mask)
        return packed.pool(x, weights), weights


class MeanPooling(nn.Module):
    """Mean over real positions: the 'no attention' pooling of the NRMS ablations (Fig. 3).

    Same interface as AdditiveAttention; the weights are 1/count on real positions.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.output_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]."""
        weights = self._weights(mask, x.dtype)
        return (weights.unsqueeze(-2) @ x).squeeze(-2), weights

    def forward_packed(self, x: Tensor, packed: Packed) -> tuple[Tensor, Tensor]:
        """The real items only: x [T, D] -> pooled [B, D], weights [B, L]."""
        weights = self._weights(packed.mask, x.dtype)
        return packed.pool(x, weights), weights

    @staticmethod
    def _weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
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
