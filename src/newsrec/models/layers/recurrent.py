"""The GRU over a user's clicked news (LSTUR's short-term interest, the GRU baseline)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from newsrec.models.layers.basic import FastPath


class MaskedGRU(nn.Module, FastPath):
    """A GRU over the real items of a padded sequence; returns the last real item's state.

    Padding may sit anywhere: real items are first moved to the front (order kept), the GRU
    runs over the left-aligned sequence, and the state after the last real item is gathered.
    Being causal, that state never saw padding. An all-padding sequence returns `h0` (zeros
    when not given). Parameters: 3 * (in_dim * hidden + hidden * hidden + 2 * hidden).
    Fast: the GRU steps through packed sequences (`pack_padded_sequence`), so each step
    computes only the sequences not finished yet; the same states.
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
        lengths = mask.sum(1)  # [B]
        if self.fast:
            # An empty sequence runs one padding step, replaced by h0 below.
            steps = pack_padded_sequence(
                x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            last = self.gru(steps, h0.unsqueeze(0).contiguous())[1][0]  # [B, hidden]
        else:
            states, _ = self.gru(x, h0.unsqueeze(0).contiguous())  # [B, N, hidden]
            index = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, self.output_dim)
            last = states.gather(1, index).squeeze(1)  # [B, hidden]
        return torch.where((lengths > 0).unsqueeze(-1), last, h0)
