"""Parameter counts: the table printed when training starts (conf/callbacks: `model_summary`)
and the counts reports quote."""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichModelSummary


def count_parameters(module: torch.nn.Module, embeddings: bool = False) -> int:
    """Trainable parameters; without embeddings, as the NRMS paper's Table 3 counts them."""
    skip = set()
    if not embeddings:
        for m in module.modules():
            if isinstance(m, torch.nn.Embedding):
                skip.update(id(p) for p in m.parameters())
    return sum(p.numel() for p in module.parameters() if p.requires_grad and id(p) not in skip)


class ModelSummary(RichModelSummary):
    """Lightning's Rich model summary, without its bf16 warning.

    Lightning's summary estimates the model's size from the precision and warns that it
    cannot for 'bf16-mixed' ("Precision bf16-mixed is not supported by the model
    summary"). Mixed precision keeps the weights in float32, so the 32-bit estimate it falls
    back to is the right one: nothing for the user to act on.
    """

    def _summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Precision .* not supported by the model")
            return super()._summary(trainer, pl_module)
