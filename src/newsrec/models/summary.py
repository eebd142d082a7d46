"""Parameter counts, as metrics.json, the model summary (newsrec.console.summary) and the
comparison report quote them."""

from __future__ import annotations

import torch


def count_parameters(module: torch.nn.Module, embeddings: bool = False) -> int:
    """Trainable parameters; without embeddings, as the NRMS paper's Table 3 counts them."""
    skip = set()
    if not embeddings:
        for m in module.modules():
            if isinstance(m, torch.nn.Embedding):
                skip.update(id(p) for p in m.parameters())
    return sum(p.numel() for p in module.parameters() if p.requires_grad and id(p) not in skip)
