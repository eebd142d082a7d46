"""Sort by length, cut the padding, pack the real items: the engine's one way to skip padding.

Titles average ~11.5 of their 30 slots. Everything that skips that padding goes through
the two helpers here: `length_groups` (rows sorted by length, in contiguous groups of
similar length) and `used_columns` (the columns a group really uses). `Packed` builds on
them to hold a batch as its real items only; `encode_titles_packed` runs the NRMS title
encoder that way (SelfAttentionNewsEncoder with `pack=True`), and evaluation
(engine/evaluation.py) encodes news in length groups cut to their longest text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from newsrec.models.engine.kernels import keys_first_attention
from newsrec.models.layers import AdditiveAttention, MultiHeadSelfAttention, masked_softmax

if TYPE_CHECKING:
    from newsrec.models.news_encoders import SelfAttentionNewsEncoder


def group_bounds(n: int, groups: int) -> list[tuple[int, int]]:
    """`groups` contiguous, non-empty [start, stop) ranges of nearly equal size over n rows.

    Integer arithmetic, not `linspace(...).tolist()`: under torch.compile a tensor's values
    turned into Python ints are guarded on, one recompilation per batch size.
    """
    bounds = [(i * n + groups // 2) // groups for i in range(groups + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if a < b]


# -- shape buckets ------------------------------------------------------------------------
# Every training batch has its own number of distinct news and of real title words, so
# without buckets every step multiplies matrices of new shapes. On CPU, oneDNN builds (and
# keeps, up to 1,024) a primitive with its own buffers for each new shape, and the heap
# fragments: the resident memory of a bf16 run grew from 2.1 to 4.4 GiB over 500 steps
# (benchmarks/RESULTS.md). Rounding those two sizes up to a few fixed values bounds the
# shapes a run ever sees, for at most ~3% more rows.


def bucket(n: int) -> int:
    """n rounded up to a multiple of 2**(bit_length(n) - 6): at most 32 sizes per doubling,
    at most 1/32 more (n below 64 is kept)."""
    if n < 64 or torch.compiler.is_compiling():  # compiled graphs take dynamic shapes
        return n
    step = 1 << (n.bit_length() - 6)
    return -(-n // step) * step


def bucketed(layer, x: Tensor) -> Tensor:
    """layer(x) for rows x [n, ...], computed on `bucket(n)` rows (zeros added) and cut back."""
    n = x.shape[0]
    padded = bucket(n)
    if padded == n:
        return layer(x)
    return layer(torch.cat([x, x.new_zeros(padded - n, *x.shape[1:])]))[:n]


def length_groups(
    lengths: Tensor, groups: int | None = None, max_rows: int | None = None
) -> tuple[Tensor, list[Tensor]]:
    """Rows sorted by length (stable): order [n] (sorted position -> row) and its consecutive
    pieces (the rows of each group, shortest first).

    Either `groups` groups of nearly equal size, or as many groups of `max_rows` as needed.
    Rows of a group then have similar lengths, so each group can be cut to its own longest.
    """
    order = torch.argsort(lengths, stable=True)
    if max_rows is not None:
        return order, list(order.split(max_rows))
    return order, [order[a:b] for a, b in group_bounds(len(order), groups or 1)]


def used_columns(mask: Tensor, step: int = 1) -> slice:
    """The columns of mask [n, L] that hold a real item of some row (at least one column):
    cuts right padding (titles) and left padding (histories) alike. With `step`, the cut is
    widened into the padding to a multiple of `step` columns (fewer shapes, see `bucket`)."""
    used = mask.any(0).nonzero()
    if not len(used):
        return slice(0, 1)
    start, stop = int(used.min()), int(used.max()) + 1
    width = -(-(stop - start) // step) * step
    if stop == mask.shape[1]:  # left padding (histories end at the last column): widen left
        return slice(max(0, stop - width), stop)
    return slice(start, min(mask.shape[1], start + width))


def unsort(x: Tensor, order: Tensor) -> Tensor:
    """Rows computed in `order` (sorted position -> input row) back in the input order."""
    return torch.empty_like(x).index_copy_(0, order, x)


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
    results back in the input order (`unsort`).

    Per-item layers (embeddings, projections, dropout) run on the T real items. Layers that
    need whole sequences (self-attention) pad one group of rows at a time, each cut to its
    own longest row: with rows sorted by length, the groups hold similar lengths and little
    padding. Group g covers items `tokens[g]` (contiguous, as packing is row by row), and
    pads with its own `masks[g]` / `indices[g]`.
    """

    def __init__(
        self, mask: Tensor, groups: int = 1, rows: int | None = None, column_step: int = 1
    ) -> None:
        """`groups` groups of nearly equal size, or groups of `rows` rows each (the last one
        smaller); each group cut to its longest row rounded up to a multiple of
        `column_step` (fewer distinct shapes, see `bucket`)."""
        self.mask = mask
        self.index = pack(mask)  # [T]
        self.row = torch.div(self.index, mask.shape[1], rounding_mode="floor")  # row of each item
        ends = mask.sum(1).cumsum(0).tolist()
        n = mask.shape[0]
        if rows is None:
            bounds = group_bounds(n, groups)
        else:
            bounds = [(a, min(a + rows, n)) for a in range(0, n, rows)]
        self.rows, self.tokens, self.masks, self.indices = [], [], [], []
        for a, b in bounds:
            sub = mask[a:b]
            sub = sub[:, used_columns(sub, column_step)]
            self.rows.append(slice(a, b))
            self.tokens.append(slice(ends[a - 1] if a else 0, ends[b - 1]))
            self.masks.append(sub)
            self.indices.append(pack(sub))

    @classmethod
    def sorted(cls, mask: Tensor, rows_per_group: int) -> tuple[Packed, Tensor]:
        """Packed rows of `mask` sorted by length, in groups of `rows_per_group` rows cut to a
        multiple of 4 columns, and `order` (sorted position -> input row).

        Fixed-size groups and rounded widths give self-attention a few shapes per run,
        whatever the batch (a new shape costs a oneDNN primitive on CPU; see `bucket`)."""
        order, _ = length_groups(mask.sum(1))
        return cls(mask[order], rows=rows_per_group, column_step=4), order

    def pad_scores(self, scores: Tensor) -> Tensor:
        """One value per item [T] -> [n, L], zeros at padding."""
        return pad(scores.unsqueeze(-1), self.index, self.mask.shape).squeeze(-1)

    def pool(self, x: Tensor, weights: Tensor) -> Tensor:
        """sum_i weights[r, i] x_i over each row r's items: x [T, D], weights [n, L] -> [n, D]."""
        w = weights.reshape(-1).index_select(0, self.index).unsqueeze(-1)  # [T, 1]
        out = x.new_zeros(self.mask.shape[0], x.shape[-1])
        return out.index_add(0, self.row, (x * w).to(out.dtype))


def packed_self_attention(layer: MultiHeadSelfAttention, x: Tensor, packed: Packed) -> Tensor:
    """`layer` over the real items only: x [T, in_dim] -> [T, heads * head_dim].

    The projection, the layer's largest product, runs once over the real items; the
    attention pads one group of similar-length rows at a time.
    """
    qkv = bucketed(layer.qkv, x)  # [T, 3 * h * hd]
    # the layer's kernel for its device; one built outside a Recommender has none yet
    attend = layer.kernel or keys_first_attention
    p = layer.dropout if layer.training else 0.0
    # split, not slicing: a slice's gradient is a zero-filled [T, 3 * h * hd] per group
    groups = qkv.split([t.stop - t.start for t in packed.tokens])
    parts = [
        unpad(attend(pad(part, index, mask.shape), mask, layer.heads, layer.head_dim, p), index)
        for part, mask, index in zip(groups, packed.masks, packed.indices, strict=True)
    ]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def packed_pooling(pooling, x: Tensor, packed: Packed) -> tuple[Tensor, Tensor]:
    """AdditiveAttention or MeanPooling over the real items x [T, D] -> [n, D], weights [n, L]."""
    if isinstance(pooling, AdditiveAttention):
        weights = masked_softmax(
            packed.pad_scores(bucketed(pooling.score, x)), packed.mask
        )  # eq. 3-4
    else:
        weights = pooling.weights(packed.mask, x.dtype)
    return packed.pool(x, weights), weights  # eq. 5


def encode_titles_packed(encoder: SelfAttentionNewsEncoder, title: Tensor) -> Tensor:
    """The NRMS title encoder on the real words only: titles [n, L] -> [n, output_dim].

    Titles are sorted by length and packed: the embedding, dropout and every projection see
    the real words only, and self-attention pads groups of similar length. Same function as
    the encoder's padded forward, a third or less of its work.
    """
    packed, order = Packed.sorted(title != 0, rows_per_group=256)
    x = encoder.embedding(title[order].reshape(-1)[packed.index])  # [T, word_dim]
    if encoder.self_attention is not None:
        x = encoder.dropout(packed_self_attention(encoder.self_attention, x, packed))  # eq. 1-2
    vectors = packed_pooling(encoder.pooling, x, packed)[0]  # eq. 3-5: [n, output_dim]
    return unsort(vectors, order)
