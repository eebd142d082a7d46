"""The GRU over a user's clicked news (LSTUR's short-term interest, the GRU baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.models.layers.basic import FastPath


class MaskedGRU(nn.Module, FastPath):
    """A GRU over the real items of a padded sequence; returns the last real item's state.

    Padding may sit anywhere: real items are first moved to the front (order kept), the GRU
    runs over the left-aligned sequence, and the state after the last real item is gathered.
    Being causal, that state never saw padding. An all-padding sequence returns `h0` (zeros
    when not given). Parameters: 3 * (in_dim * hidden + hidden * hidden + 2 * hidden).

    Fast: the GRU's equations written out (`recur`) from input gates computed apart
    (`input_gates`: W_i x + b_i reads one item at a time, so the engine computes it once per
    distinct news, and an evaluation once per news of the split instead of once per history
    slot).
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)
        self.output_dim = hidden

    def forward(self, x: Tensor, mask: Tensor, h0: Tensor | None = None) -> Tensor:
        """x [B, N, D], mask [B, N], h0 [B, hidden] or None -> [B, hidden]."""
        if self.fast:
            return self.recur(self.input_gates(x), mask, h0)
        B, N, D = x.shape
        # stable sort on "is padding" keeps the real items' order and puts them first
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # [B, N]
        x = x.gather(1, order.unsqueeze(-1).expand(B, N, D))
        if h0 is None:
            h0 = x.new_zeros(B, self.output_dim)
        states, _ = self.gru(x, h0.unsqueeze(0).contiguous())  # [B, N, hidden]
        lengths = mask.sum(1)
        index = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, self.output_dim)
        last = states.gather(1, index).squeeze(1)  # [B, hidden]
        return torch.where((lengths > 0).unsqueeze(-1), last, h0)

    def input_gates(self, x: Tensor) -> Tensor:
        """W_ir x + b_ir, W_iz x + b_iz, W_in x + b_in of items x [..., D] -> [..., 3 * hidden]."""
        return F.linear(x, self.gru.weight_ih_l0, self.gru.bias_ih_l0)

    def recur(self, gates: Tensor, mask: Tensor, h0: Tensor | None = None) -> Tensor:
        """The state after each row's last real item from its input gates [B, N, 3 * hidden]
        (`input_gates`), mask [B, N], h0 [B, hidden] or None -> [B, hidden]: torch.nn.GRU's
        equations (r, z, n gates; h' = (1 - z) * n + z * h), one column at a time, each row's
        state updated where its column holds a real item (padding anywhere is skipped, no
        gather). Columns without a real item are not computed; histories come left-padded and
        grouped by length, so few padding slots are."""
        B, N, _ = gates.shape
        h = gates.new_zeros(B, self.output_dim) if h0 is None else h0.to(gates.dtype)
        weight, bias = self.gru.weight_hh_l0, self.gru.bias_hh_l0
        used = mask.any(0).tolist()
        # unbind: one view per column whose backward stacks the gradients once (a slice's
        # backward would fill a zero [B, N, 3H] per column)
        for column, real, step in zip(gates.unbind(1), mask.unbind(1), used, strict=True):
            if not step:
                continue
            i_r, i_z, i_n = column.chunk(3, dim=-1)
            h_r, h_z, h_n = F.linear(h, weight, bias).chunk(3, dim=-1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = torch.where(real.unsqueeze(-1), n + z * (h - n), h)  # (1 - z) * n + z * h
        return h
