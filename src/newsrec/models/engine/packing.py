"""Sort by length, cut the padding, pack the real items: the engine's one way to skip padding.

Titles average ~11.5 of their 30 slots and histories ~19 of their 50. Everything that skips
that padding goes through the helpers here: `length_groups` (rows sorted by length, in
contiguous groups of similar length), `used_columns` (the columns a group really uses) and
`Packed`, a batch of sequences held as its real items only. Layers run on packed items
through the entry points they define for it (e.g. `MultiHeadSelfAttention.packed`); nothing
here knows a layer. Pure tensor code: no model imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


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


def bucketed(function: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """function(x) for rows x [n, ...], computed on `bucket(n)` rows (zeros added), cut back."""
    n = x.shape[0]
    padded = bucket(n)
    if padded == n:
        return function(x)
    return function(torch.cat([x, x.new_zeros(padded - n, *x.shape[1:])]))[:n]


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


# Text features and the features aligned with their words (cut together).
TEXTS = (("title", "title_entities"), ("abstract", None))


def take(rows: Tensor, index: Tensor) -> Tensor:
    """rows[index] -> [*index.shape, D] for rows [U, D]: as indexing, but its backward adds
    the gradients up 4-5x faster on CPU (index_select's, not index_put's)."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, rows.shape[-1])


def news_features(
    table: dict[str, Tensor], rows: Tensor, features: tuple[str, ...]
) -> dict[str, Tensor]:
    """News-table `features` of `rows`, text cut to the longest text among them (padded
    positions are masked in every encoder: the cut changes nothing but the work)."""
    out = {name: table[name][rows] for name in features}
    for text, aligned in TEXTS:
        if text in out and out[text].shape[0]:
            cut = slice(0, used_columns(out[text] != 0).stop)  # right padding only
            out[text] = out[text][:, cut]
            if aligned in out:
                out[aligned] = out[aligned][:, cut]
    return out


def table_size(table: dict[str, Tensor]) -> int:
    """Rows of a news table (every feature has one per news)."""
    return len(next(iter(table.values())))


class Packed:
    """A batch of sequences (mask [n, L]) held as its real items only, [T, D] in row order.

    `Packed.sorted(mask, rows_per_group)` sorts the rows by length first and says how to put
    results back in the input order (`unsort`).

    Per-item layers (embeddings, projections, dropout, a convolution's windows) run on the T
    real items. Layers that need whole sequences (self-attention) pad one group of rows at a
    time, each cut to its own longest row: with rows sorted by length, the groups hold
    similar lengths and little padding. Group g covers items `tokens[g]` (contiguous, as
    packing is row by row), and pads with its own `masks[g]` / `indices[g]`.
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
        self.lengths = mask.sum(1)  # [n]
        ends = self.lengths.cumsum(0)
        # an item's place in its row (rows may start with padding: count real items only)
        self.position = (
            torch.arange(len(self.index), device=mask.device) - (ends - self.lengths)[self.row]
        )
        ends = ends.tolist()
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

    def take_rows(self, rows: Tensor) -> tuple[Packed, Tensor]:
        """The rows `rows` [m] of this batch (repeats allowed) as a Packed of their own, and the
        index [T'] of each of its items among this batch's items."""
        taken = Packed(self.mask[rows])
        starts = self.lengths.cumsum(0) - self.lengths
        return taken, starts[rows][taken.row] + taken.position

    def pad(self, x: Tensor) -> Tensor:
        """Items x [T, D] -> [n, L, D], zeros at padding."""
        return pad(x, self.index, self.mask.shape)

    def pad_scores(self, scores: Tensor) -> Tensor:
        """One value per item [T] -> [n, L], zeros at padding."""
        return pad(scores.unsqueeze(-1), self.index, self.mask.shape).squeeze(-1)

    def pool(self, x: Tensor, weights: Tensor) -> Tensor:
        """sum_i weights[r, i] x_i over each row r's items: x [T, D], weights [n, L] -> [n, D]."""
        w = weights.reshape(-1).index_select(0, self.index).unsqueeze(-1)  # [T, 1]
        out = x.new_zeros(self.mask.shape[0], x.shape[-1])
        return out.index_add(0, self.row, (x * w).to(out.dtype))

    def windows(self, x: Tensor, offsets: Sequence[int], rows: int | None = None) -> Tensor:
        """For each item, the items `offsets` places after it in its row, concatenated:
        x [T, D] -> [T, len(offsets) * D], zeros where a window leaves the row (as a
        convolution over the padded row sees zeros beyond its real items). With `rows` > T,
        zero rows follow up to `rows` (a bucketed size, see `bucket`) without another copy.
        One gather: a window's slot beyond its row reads an appended zero row."""
        index = self.window_index(offsets, rows)
        with_zero = torch.cat([x, x.new_zeros(1, x.shape[1])])  # row T: the zeros past a row's end
        return with_zero.index_select(0, index.reshape(-1)).view(len(index), -1)

    def window_index(self, offsets: Sequence[int], rows: int | None = None) -> Tensor:
        """`windows`' gather [max(rows, T), len(offsets)]: the item each slot reads, T for a
        zero (beyond its row, or a row past T)."""
        T = len(self.index)
        offsets = torch.as_tensor(offsets, device=self.index.device)
        place = self.position[:, None] + offsets  # [T, k]
        inside = (place >= 0) & (place < self.lengths[self.row][:, None])
        index = torch.where(inside, torch.arange(T, device=self.index.device)[:, None] + offsets, T)
        if rows is not None and rows > T:
            index = torch.cat([index, index.new_full((rows - T, len(offsets)), T)])
        return index
