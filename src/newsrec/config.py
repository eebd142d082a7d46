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


def optimized_value(metrics: dict, key: str | None) -> float | None:
    """`metrics[key]`, the number train.py returns to a Hydra sweeper (`optimized_metric`).

    None when no key is set (a plain run or a grid sweep needs no return value). A key the
    run did not produce is an error: a sweeper given nothing would optimise nonsense.
    """
    if key is None:
        return None
    if key not in metrics:
        numbers = sorted(k for k, v in metrics.items() if isinstance(v, float))
        raise KeyError(
            f"optimized_metric={key!r} is not among this run's metrics ({', '.join(numbers)}); "
            "set optimized_metric to one of them (val/auc_best needs validation to run and "
            "the model_checkpoint callback)"
        )
    return float(metrics[key])
