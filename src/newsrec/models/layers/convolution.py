"""Convolutions over word vectors: the title CNN of NPA, LSTUR and NAML, and DKN's KCNN.

Each `forward` is the paper's padded computation. `packed` computes the same outputs on the
real words only (`engine.packing.Packed`): each word's window is gathered from its row's
real words, zeros past the row's ends, exactly what the padded convolution sees, so no
window is computed at a padded position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.models.engine.packing import Packed, bucket
from newsrec.models.engine.window_conv import Workspace, window_convolution
from newsrec.models.layers.basic import Dropout


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
        # 'same' padding: the output at word i reads words i - left ... i - left + window - 1
        left = (window - 1) // 2
        self.offsets = tuple(range(-left, window - left))
        self.workspace: Workspace | None = None  # training's reused buffers (window_conv.py)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, in_dim], mask [B, L] -> [B, L, filters]."""
        x = x * mask.unsqueeze(-1).to(x.dtype)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # Conv1d wants [B, C, L]
        return self.dropout(F.relu(x))

    def packed(self, x: Tensor, packed: Packed) -> Tensor:
        """Packed words x [T, in_dim] -> [T, filters]: one product of each word's window.

        Training on a CPU: the same computation in buffers the layer keeps from one step to
        the next (engine/window_conv.py); not under torch.compile, which fuses on its own."""
        weight = self.conv.weight.permute(0, 2, 1).reshape(self.output_dim, -1)  # [F, w * in]
        rows = bucket(len(x))
        training = self.training and torch.is_grad_enabled() and len(x) > 0
        if training and x.device.type == "cpu" and not torch.compiler.is_compiling():
            if self.workspace is None or not self.workspace.free():
                self.workspace = Workspace()  # the last one's graph is still waiting
            index = packed.window_index(self.offsets, rows)
            p = self.dropout.p
            return window_convolution(x, index, weight, self.conv.bias, p, self.workspace)
        windows = packed.windows(x, self.offsets, rows=rows)  # [bucket(T), w * in]
        out = F.linear(windows, weight, self.conv.bias)[: len(x)]
        return self.dropout(F.relu(out))

    def train(self, mode: bool = True) -> WordCNN:
        if not mode:
            self.workspace = None  # evaluation needs none: its memory goes back
        return super().train(mode)


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
        e = self.entity_channel(entities, entity_mask & word_mask)
        x = torch.stack([w, e], dim=1)  # [B, 2, L, Dw]
        pooled = []
        for h, conv in zip(self.windows, self.convs, strict=True):
            c = F.relu(conv(F.pad(x, (0, 0, 0, h - 1)))).squeeze(-1)  # [B, filters, L]
            c = c.masked_fill(~word_mask.unsqueeze(1), 0.0)  # ReLU >= 0, so 0 never wins a max
            pooled.append(c.amax(dim=-1))  # max over time: [B, filters]
        return torch.cat(pooled, dim=-1)

    def entity_channel(self, entities: Tensor, mask: Tensor) -> Tensor:
        """g(e) = tanh(M e + b) of each word's entity [..., De], zero where `mask` is False."""
        e = torch.tanh(self.entity_transform(entities))
        return e * mask.unsqueeze(-1).to(e.dtype)

    def packed(
        self, words: Tensor, entities: Tensor, entity_mask: Tensor, packed: Packed
    ) -> Tensor:
        """Packed words [T, Dw] and their entities [T, De] (entity_mask [T]) -> [n, filters *
        windows]: each window, from its first word on, as one product; max over each row."""
        x = torch.cat([words, self.entity_channel(entities, entity_mask)], -1)  # [T, 2 * Dw]
        pooled = []
        for h, conv in zip(self.windows, self.convs, strict=True):
            # Conv2d's weight [F, 2, h, Dw] in the windows' (offset, channel, dim) order
            weight = conv.weight.permute(0, 2, 1, 3).reshape(conv.out_channels, -1)
            window = packed.windows(x, range(h), rows=bucket(len(x)))  # [bucket(T), h * 2 * Dw]
            c = F.relu(F.linear(window, weight, conv.bias)[: len(x)])
            pooled.append(packed.pad(c).amax(dim=1))  # max over each row's words: [n, F]
        return torch.cat(pooled, dim=-1)
