"""Initial weights as the reference code starts them, per layer type, with the source beside it.

PyTorch's defaults differ from Keras' (the framework of microsoft/recommenders, the official
code of NRMS, NPA, LSTUR, NAML): a Linear starts at U(+-1/sqrt(fan_in)) with a random bias
where Keras uses glorot_uniform and zero biases, and an nn.Embedding at N(0, 1) where
recommenders starts user-ID embeddings at zero. One function applies the scheme to a whole
recommender, once, after it is built (`newsrec.models.factory.build_recommender`):

| layer                                   | initial weights            | source                       |
|-----------------------------------------|----------------------------|------------------------------|
| Linear (dense, attention projections)   | glorot_uniform, bias 0     | Keras Dense defaults; recommenders' AttLayer2 (W, b) |
| self-attention Q, K, V                  | glorot_uniform per matrix  | recommenders' SelfAttention (WQ, WK, WV) |
| additive-attention query q              | glorot_uniform [dim, 1]    | recommenders' AttLayer2 (q)  |
| Conv1d / Conv2d                         | glorot_uniform, bias 0     | Keras Conv1D defaults (NPA, LSTUR, NAML title CNN) |
| GRU                                     | input kernel glorot_uniform, recurrent orthogonal, biases 0 | Keras GRU defaults (LSTUR, GRU) |
| user-ID embedding                       | zeros                      | recommenders' LSTUR and NPA (`embeddings_initializer="zeros"`) |
| category / subcategory (topic) embedding | U(-0.05, 0.05)            | Keras Embedding default, recommenders' NAML vert/subvert |
| word embedding                          | untouched: pretrained (GloVe) when given, else PyTorch's N(0, 1) | NRMS: GloVe; no reference trains MIND without it |
| entity embedding (DKN)                  | untouched: TransE vectors of MIND | DKN |

Why zero user embeddings matter: at N(0, 1) LSTUR's 400-d long-term vector has a norm of
~20, several times the short-term GRU state a short history gives, so at the start the user
vector is mostly noise keyed on the user ID.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

EMBEDDING_UNIFORM = 0.05  # Keras Embedding's default RandomUniform(-0.05, 0.05)
_TOPIC_NAMES = {"topic", "subtopic", "category", "subcategory"}


def _glorot_uniform(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    nn.init.uniform_(weight, -bound, bound)


def _pretrained(model: nn.Module) -> tuple[str, ...]:
    """Name prefixes of the pretrained language models inside `model` (PLM news encoders):
    their weights are the point of them and are never re-initialised. transformers is only
    looked up if something already imported it: a model without a PLM does not pay for it."""
    transformers = sys.modules.get("transformers")
    if transformers is None:
        return ()
    return tuple(
        f"{name}."
        for name, module in model.named_modules()
        if isinstance(module, transformers.PreTrainedModel)
    )


def init_weights(model: nn.Module) -> nn.Module:
    """Apply the reference initialisation (module docstring) to every layer of `model`,
    pretrained language models (newsrec.models.plm) excepted."""
    from newsrec.models.layers import AdditiveAttention, MultiHeadSelfAttention

    pretrained = _pretrained(model)
    with torch.no_grad():
        for name, module in model.named_modules():
            if pretrained and f"{name}.".startswith(pretrained):
                continue
            parts = set(name.split("."))
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)  # fans include the kernel, as Keras
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GRU):
                for param_name, param in module.named_parameters():
                    if param_name.startswith("weight_ih"):  # Keras kernel [in, 3 * hidden]
                        nn.init.xavier_uniform_(param)
                    elif param_name.startswith("weight_hh"):  # Keras recurrent_kernel
                        nn.init.orthogonal_(param)
                    else:
                        nn.init.zeros_(param)
            elif isinstance(module, nn.Embedding):
                if name.split(".")[-1] == "user_embedding":
                    nn.init.zeros_(module.weight)
                elif parts & _TOPIC_NAMES:
                    nn.init.uniform_(module.weight, -EMBEDDING_UNIFORM, EMBEDDING_UNIFORM)
        # Then layers holding parameters of their own (named_modules lists a parent before
        # its children, so this second pass comes after their Linear children's init).
        for module in model.modules():
            if isinstance(module, MultiHeadSelfAttention):
                # Q, K and V are three [in_dim, heads * head_dim] kernels in the reference,
                # stacked here into one Linear: glorot's fans are those of each matrix.
                out_dim, in_dim = module.qkv.weight.shape[0] // 3, module.qkv.weight.shape[1]
                for block in module.qkv.weight.split(out_dim):
                    _glorot_uniform(block, in_dim, out_dim)
            elif isinstance(module, AdditiveAttention):
                _glorot_uniform(module.query, module.query.numel(), 1)
    return model
