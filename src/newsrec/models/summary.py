"""The parameter table printed when training starts (conf/callbacks: `model_summary`)."""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichModelSummary


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
