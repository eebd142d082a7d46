"""Hydra/OmegaConf helpers shared by train.py, eval.py and the tests."""

from __future__ import annotations

import os

import torch
from omegaconf import OmegaConf


def default_precision() -> str:
    """bf16 mixed precision on a GPU, float32 on CPU (where bf16 must be asked for)."""
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def default_loader_workers() -> int:
    """DataLoader workers: none on a CPU-only machine, where a batch is a few numpy slices
    and a worker would take a core from the model; on a GPU machine a few, so the next batch
    is built while the GPU works (at most 4, a quarter of the cores)."""
    if not torch.cuda.is_available():
        return 0
    return max(1, min(4, (os.cpu_count() or 4) // 4))


OmegaConf.register_new_resolver("newsrec_precision", default_precision, replace=True)
OmegaConf.register_new_resolver("newsrec_loader_workers", default_loader_workers, replace=True)
