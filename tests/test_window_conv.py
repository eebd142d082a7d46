"""The word CNN's training path in reused buffers (engine/window_conv.py) computes what the
layer's plain computation does: outputs and gradients in float64 with the same dropout mask,
step after step in one workspace, and never with a buffer another graph still needs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from newsrec.models.engine.kernels import keep_mask
from newsrec.models.engine.packing import Packed, bucket
from newsrec.models.engine.window_conv import Workspace, window_convolution
from newsrec.models.layers.convolution import WordCNN

from conftest import assert_packed_equals_padded, build_recommender, data_info


def texts(n: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """A mask [n, width] of right-padded texts: empty, one word, full width, and random."""
    lengths = torch.randint(0, width + 1, (n,), generator=gen)
    lengths[:3] = torch.tensor([0, 1, width])
    return torch.arange(width) < lengths[:, None]


def inputs(T: int, gen: torch.Generator, dim: int = 6, filters: int = 5, window: int = 3):
    x = torch.randn(T, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(filters, window * dim, generator=gen, dtype=torch.float64)
    bias = torch.randn(filters, generator=gen, dtype=torch.float64)
    return x, weight.requires_grad_(), bias.requires_grad_()


def reference(x, packed: Packed, offsets, weight, bias, p: float, seed: int):
    """The plain computation: windows, product, ReLU, then dropout with the mask the fused
    path draws (the same generator state, the same number of draws)."""
    z = F.linear(packed.windows(x, offsets), weight, bias)
    torch.manual_seed(seed)
    keep, scale = keep_mask(z, p)
    return F.relu(z) * keep.to(z.dtype) * scale


def fused(x, packed: Packed, offsets, weight, bias, p: float, seed: int, workspace: Workspace):
    index = packed.window_index(offsets, bucket(len(x)))
    torch.manual_seed(seed)
    return window_convolution(x, index, weight, bias, p, workspace)


def outputs_and_grads(function, probe, x, packed, offsets, weight, bias, *rest):
    out = function(x, packed, offsets, weight, bias, *rest)
    (out * probe).sum().backward()
    grads = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_reused_buffers_compute_the_plain_convolution_step_after_step(p):
    gen = torch.Generator().manual_seed(0)
    offsets = (-1, 0, 1)
    workspace = Workspace()
    # three steps in one workspace: the second smaller (buffers cut), the third larger (grown)
    for step, (n, width) in enumerate([(70, 9), (20, 4), (150, 12)]):
        packed = Packed(texts(n, width, gen))
        x, weight, bias = inputs(len(packed.index), gen)
        probe = torch.randn(len(x), 5, generator=gen, dtype=torch.float64)
        args = (x, packed, offsets, weight, bias, p, step)
        got = outputs_and_grads(fused, probe, *args, workspace)
        want = outputs_and_grads(reference, probe, *args)
        torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(got[1], want[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert workspace.free()  # its backward has run
    if p:  # dropout really dropped: a fifth of the positive outputs are zero
        assert 0.1 < (got[0] == 0).double().mean() < 0.8


def test_a_workspace_still_needed_is_never_rewritten():
    """Two forwards before a backward (a layer called twice in one step): the layer gives
    the second its own buffers, and both gradients are right; a retained graph's second
    backward fails loudly instead of reading rewritten buffers."""
    gen = torch.Generator().manual_seed(1)
    layer = WordCNN(6, filters=5, window=3, dropout=0.0).double().train()
    packed = Packed(texts(30, 7, gen))
    x1 = torch.randn(len(packed.index), 6, generator=gen, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn_like(x1).requires_grad_()
    out1 = layer.packed(x1, packed)
    first = layer.workspace
    out2 = layer.packed(x2, packed)
    assert layer.workspace is not first  # the first graph still needs its buffers
    (out1.sum() + 2 * out2.sum()).backward()
    with torch.no_grad():  # the plain computation (the fast path is for training with grad)
        layer.eval()
        plain1, plain2 = layer.packed(x1, packed), layer.packed(x2, packed)
        layer.train()
    torch.testing.assert_close(out1, plain1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out2, plain2, rtol=1e-12, atol=1e-12)
    for x, scale in ((x1, 1.0), (x2, 2.0)):
        y = x.detach().requires_grad_()
        weight = layer.conv.weight.permute(0, 2, 1).reshape(5, -1)
        want = torch.autograd.grad(
            (
                scale * F.relu(F.linear(packed.windows(y, layer.offsets), weight, layer.conv.bias))
            ).sum(),
            y,
        )[0]
        torch.testing.assert_close(x.grad, want, rtol=1e-12, atol=1e-12)
    # the workspace the layer keeps is reused by the next step, once its graph is done
    layer.packed(x1, packed).sum().backward()
    kept = layer.workspace
    layer.packed(x1, packed).sum().backward()
    assert layer.workspace is kept
    out = layer.packed(x1, packed)
    out.sum().backward(retain_graph=True)
    layer.packed(x2, packed).sum().backward()  # rewrites the buffers `out`'s graph saved
    with pytest.raises(RuntimeError, match="modified (by an )?inplace"):
        out.sum().backward()


def test_evaluation_gives_the_buffers_back():
    layer = WordCNN(6, filters=5, window=3).train()
    packed = Packed(texts(10, 5, torch.Generator().manual_seed(2)))
    layer.packed(torch.randn(len(packed.index), 6), packed).sum().backward()
    assert layer.workspace is not None and layer.workspace.buffers
    layer.eval()
    assert layer.workspace is None


@pytest.mark.parametrize("name", ["naml", "npa", "lstur"])
def test_cnn_news_encoders_train_through_it_as_the_padded_model_computes(name):
    """Without dropout, a training step of the CNN news encoders on the fast path (reused
    buffers) equals the padded computation: vectors and gradients in float64."""
    gen = torch.Generator().manual_seed(3)
    data = data_info(num_news=300)
    model = build_recommender(name, data, "model.news_encoder.dropout=0.0")
    news = model.news_encoder.double().train()
    table = {
        text: torch.randint(1, data.vocab_size, (300, width), generator=gen)
        * texts(300, width, gen)
        for text, width in (("title", 12), ("abstract", 30))
    }
    table["category"] = torch.randint(0, data.num_categories, (300,), generator=gen)
    table["subcategory"] = torch.randint(0, data.num_subcategories, (300,), generator=gen)
    features = {k: table[k] for k in news.features}
    user = torch.randint(0, data.num_users, (300,), generator=gen) if news.needs_user else None
    assert_packed_equals_padded(news, features, user)
    assert any(m.workspace is not None for m in news.modules() if isinstance(m, WordCNN))


def test_frozen_words_get_no_gradient_and_the_filters_still_learn():
    gen = torch.Generator().manual_seed(4)
    packed = Packed(texts(40, 8, gen))
    x, weight, bias = inputs(len(packed.index), gen)
    x.requires_grad_(False)
    out = fused(x, packed, (-1, 0, 1), weight, bias, 0.2, 7, Workspace())
    out.square().sum().backward()
    got = weight.grad.clone(), bias.grad.clone()
    weight.grad = bias.grad = None
    reference(x, packed, (-1, 0, 1), weight, bias, 0.2, 7).square().sum().backward()
    assert x.grad is None
    torch.testing.assert_close(got[0], weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], bias.grad, rtol=1e-12, atol=1e-12)
