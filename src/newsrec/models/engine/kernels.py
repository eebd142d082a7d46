"""Faster computations of two plain layers' functions: dropout and multi-head attention.

Layers with a fast path (`Dropout`, `MultiHeadSelfAttention`) call these once the engine
has switched them on (`FastPath.set_fast`, when the model is built with engine=fast);
otherwise they run the paper's computation written in layers.py. Every kernel here gives
the same numbers as that computation (tests/test_models.py and test_scoring.py check each).
Pure tensor code: no model imports.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def keep_mask(x: Tensor, p: float) -> tuple[Tensor, float]:
    """Inverted dropout's mask for x: (keep [x.shape] bool, scale of the kept values).

    16 random bits per element (see `dropout`): the drop rate is `p` rounded to a multiple of
    1/65,536 and the scale is the exact inverse keep rate."""
    n = x.numel()
    dropped = round(p * 65536)  # of the 65,536 values a 16-bit draw can take
    # random_(-2**63, None) fills all 64 bits (plain random_() leaves the top bit 0).
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
    return keep, 65536 / (65536 - dropped)


class _CheapMaskDropout(torch.autograd.Function):
    """Inverted dropout whose mask comes from 16 random bits per element (see `cheap_dropout`)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        keep, scale = keep_mask(x, p)
        # The mask as x's dtype, scaled by the exact inverse keep rate. Going through uint8
        # and multiplying is ~10x faster on CPU than torch.where or bool arithmetic.
        scale = keep.view(torch.uint8).to(x.dtype).mul_(scale)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


def dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout (training mode); on a CPU with a mask that costs a tenth of torch's.

    torch's CPU dropout draws a Bernoulli sample per element: measured here, that was a
    quarter of an NRMS training step in bf16 (benchmarks/RESULTS.md). On a CPU this draws 64
    random bits per four elements instead. The drop rate is `p` rounded to a multiple of
    1/65,536 (0.2 -> 0.19999695) and kept values are scaled by the exact inverse keep rate, so
    the expected output equals the input. Masks come from torch's generator, so
    `manual_seed` reproduces them. Other devices keep `F.dropout` (fused there): the choice is
    made here, at each call, from the tensor's device.
    """
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return _CheapMaskDropout.apply(x, p)


def _heads(qkv: Tensor, heads: int, head_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """qkv [B, L, 3 * h * hd] -> q, k, v, each [B, h, L, hd]."""
    B, L, _ = qkv.shape
    return tuple(
        t.view(B, L, heads, head_dim).transpose(1, 2) for t in qkv.split(heads * head_dim, -1)
    )


def _finish(out: Tensor, mask: Tensor) -> Tensor:
    """[B, h, L, hd] -> [B, L, h * hd] (heads concatenated), zero where every key is masked."""
    B, h, L, hd = out.shape
    real = mask.any(-1).to(out.dtype)[:, None, None, None]
    return (out * real).transpose(1, 2).reshape(B, L, h * hd)


def keys_first_attention(
    qkv: Tensor, mask: Tensor, heads: int, head_dim: int, dropout: float = 0.0
) -> Tensor:
    """NRMS eq. 1-2 (6-7) from the projections qkv [B, L, 3 * h * hd], mask [B, L], on CPU.

    Plain products: for titles' small L x L blocks the fused kernel was 2x (float32) to 10x
    (bf16) slower on this CPU. The scores are laid out keys-first, [B, h, L_k, L_q], so the
    softmax runs over dim -2, which torch's CPU kernel vectorises across queries: 20-25%
    faster for L = 8-23 than over the last dim (benchmarks/RESULTS.md). The scale goes on q
    and the mask is one addition: no extra pass over L x L. Masked keys get the float
    minimum: zero weight, and an all-masked row stays finite (its output is zeroed).
    """
    q, k, v = _heads(qkv, heads, head_dim)
    B, L = mask.shape
    bias = torch.zeros((B, 1, L, 1), dtype=q.dtype, device=q.device)
    bias = bias.masked_fill(~mask[:, None, :, None], torch.finfo(q.dtype).min)
    scores = k @ (q * (1.0 / math.sqrt(head_dim))).transpose(-2, -1) + bias  # [B, h, Lk, Lq]
    weights = torch.softmax(scores, dim=-2).transpose(-2, -1)  # eq. 1: [B, h, L, L]
    out = F.dropout(weights, dropout, dropout > 0) @ v  # eq. 2: [B, h, L, hd]
    return _finish(out, mask)


def fused_attention(
    qkv: Tensor, mask: Tensor, heads: int, head_dim: int, dropout: float = 0.0
) -> Tensor:
    """NRMS eq. 1-2 (6-7) by torch's fused kernel (flash / memory-efficient on a GPU)."""
    q, k, v = _heads(qkv, heads, head_dim)
    B, L = mask.shape
    bias = torch.zeros((B, 1, 1, L), dtype=q.dtype, device=q.device)
    bias = bias.masked_fill(~mask[:, None, None, :], torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return _finish(out, mask)


def attention(qkv: Tensor, mask: Tensor, heads: int, head_dim: int, dropout: float = 0.0) -> Tensor:
    """NRMS eq. 1-2 (6-7) by the kernel that is fastest for where and what it computes, chosen
    here at each call from the tensor's device, dtype, gradient and length:
    - a GPU: torch's fused kernel (flash / memory-efficient);
    - a CPU: torch's fused kernel where its blocks win on this project's CPU
      (`benchmarks/bench_attention.py`, two runs): float32 rows of 48 keys or more with
      gradients (a training batch's 50-news histories: 1.2-1.35x) and of 24 or more without
      (an evaluation batch's long histories: 1.0-2.8x, and far steadier when other tenants load
      the memory bus); bf16, where the fused kernel is 2-9x slower, and shorter rows take the
      keys-first products.
    """
    long = mask.shape[1] >= (48 if qkv.requires_grad else 24)
    if qkv.device.type != "cpu" or (qkv.dtype == torch.float32 and long):
        return fused_attention(qkv, mask, heads, head_dim, dropout)
    return keys_first_attention(qkv, mask, heads, head_dim, dropout)
