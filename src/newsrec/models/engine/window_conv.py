"""The word CNN of a training step (NAML, NPA, LSTUR, `cnn`) in memory reused from step to step.

`WordCNN.packed` is one product of each word's window, then ReLU and dropout: for NAML's
abstracts, tensors of 100-250 MB each (windows [T, 3 * 300], outputs [T, 400], their masks and
gradients). On a CPU every fresh block of that size is a new `mmap` from the C library,
faulted in and zeroed page by page, and given back at its free: measured on NAML, 2.3 GiB of
fresh pages a step, a fifth of its float32 step and a third of its bf16 one
(benchmarks/RESULTS.md). Here the windows, the product, the mask and their gradients live in
a `Workspace` the layer keeps, written in place each step (`out=`), and ReLU and dropout are
one mask: relu(z) * keep / (1 - p) = z * [z > 0 and keep] / (1 - p).

Same numbers as the layer's plain computation given the same dropout mask
(tests/test_window_conv.py). A workspace is reused only once the graph of its last use has run
its backward or is gone; otherwise (two forwards before a backward) the call gets fresh
buffers. A retained graph's second backward after the next step fails loudly (autograd sees
its saved buffers and its output rewritten in place) rather than computing with stale values.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor

from newsrec.models.engine.kernels import keep_mask


class Workspace:
    """Named buffers of one layer, grown as needed (25% headroom, so that the bucketed sizes
    of the following steps mostly fit), never shrunk (the layer drops it for evaluation)."""

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}
        self.user = None  # weakref to the autograd node of the last forward, until its backward

    def take(self, name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype) -> Tensor:
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = like.new_empty(size + size // 4, dtype=dtype)
            self.buffers[name] = buffer
        return buffer[:size].view(shape)

    def free(self) -> bool:
        """Whether no live graph still needs these buffers."""
        return self.user is None or self.user() is None


class _WindowConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index, weight, bias, p: float, workspace: Workspace):
        # Autocast's choice made by hand: the products in out= buffers are outside its rules.
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        T, D = x.shape
        rows, k = index.shape
        with torch.autocast(device, enabled=False):
            w, b = weight.to(dtype), bias.to(dtype)
            padded = workspace.take("padded", (T + 1, D), x, dtype)  # row T: the zeros
            padded[:T].copy_(x)
            padded[T].zero_()
            windows = workspace.take("windows", (rows, k * D), x, dtype)
            torch.index_select(padded, 0, index.reshape(-1), out=windows.view(rows * k, D))
            z = torch.addmm(b, windows, w.t(), out=workspace.take("z", (rows, len(w)), x, dtype))
            # The mask of ReLU and dropout together, as x's dtype and scaled (kept for backward;
            # rows past T are where backward puts zeros).
            keep, scale = keep_mask(z[:T], p)
            keep &= z[:T] > 0
            mask = workspace.take("mask", (rows, len(w)), x, dtype)
            mask[:T].copy_(keep.view(torch.uint8)).mul_(scale)
            out = z[:T].mul_(mask[:T])
        ctx.save_for_backward(windows, w, mask, index)
        ctx.workspace, ctx.shape = workspace, (T, D)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        workspace.user = weakref.ref(ctx)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        windows, w, mask, index = ctx.saved_tensors
        (T, D), workspace = ctx.shape, ctx.workspace
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grad_z = mask  # the mask's buffer becomes the gradient of z, zero past T
        grad_z[:T].mul_(grad.to(mask.dtype))
        grad_z[T:].zero_()
        grad_weight = (grad_z.t() @ windows).to(weight_dtype)
        grad_bias = grad_z.sum(0).to(bias_dtype)
        workspace.user = None
        if not ctx.needs_input_grad[0]:  # e.g. frozen word vectors
            return None, None, grad_weight, grad_bias, None, None
        grad_windows = torch.mm(grad_z, w, out=windows)  # windows' last use was just above
        padded = workspace.take("padded", (T + 1, D), grad, windows.dtype).zero_()
        padded.index_add_(0, index.reshape(-1), grad_windows.view(-1, D))
        return padded[:T].to(x_dtype, copy=True), None, grad_weight, grad_bias, None, None


def window_convolution(
    x: Tensor, index: Tensor, weight: Tensor, bias: Tensor, p: float, workspace: Workspace
) -> Tensor:
    """dropout(relu(windows(x) @ weight^T + bias)) for packed words x [T, D] -> [T, F].

    `index` [rows, k]: for each of `rows` >= T window rows, the k items of x it reads (T: a
    zero). `weight` [F, k * D] in the windows' (offset, dim) order. Needs `workspace.free()`.
    """
    return _WindowConvolution.apply(x, index, weight, bias, p, workspace)
