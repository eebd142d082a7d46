"""Hydra/OmegaConf helpers shared by train.py, eval.py and the tests."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def default_precision() -> str:
    """bf16 mixed precision on a GPU, float32 on CPU (where bf16 must be asked for)."""
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


OmegaConf.register_new_resolver("newsrec_precision", default_precision, replace=True)
