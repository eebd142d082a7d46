"""Hydra/OmegaConf helpers shared by train.py, eval.py and the tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

# The config tree lives beside src/ in the repository (train.py and eval.py read it there).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


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


def model_presets() -> list[str]:
    """The models `model=<name>` can name: conf/model/*.yaml, without the shared parts (`_*`)."""
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if not p.stem.startswith("_"))


def compose_for_checkpoint(
    checkpoint: str | Path, data: str, data_dir: str | Path | None = None
) -> DictConfig:
    """conf/eval.yaml for `checkpoint` on data config `data`, composed as `python eval.py
    ckpt_path=... data=...` would be: for Python callers (the API, the pictures' CLI)."""
    from hydra import compose, initialize_config_dir

    overrides = [f"data={data}", f"ckpt_path={checkpoint}"]
    if data_dir is not None:
        overrides.append(f"paths.data_dir={data_dir}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("eval", overrides=overrides)
