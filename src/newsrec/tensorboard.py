"""What TensorBoard shows of a run besides the scalars the module logs.

- `hyperparameters`: the HPARAMS tab's columns, the settings a researcher compares across
  runs (model and its parts' sizes, optimizer and learning rate, scheduler, data and its
  scale, seed, engine, precision), beside the final metrics; not the 97 keys of the whole
  config (`_target_` strings of callbacks, paths, Hydra's own settings).
- `LearningRateMonitor`: Lightning's, logging `lr-<optimizer>` as a scalar, and quiet in the
  runs that have no logger (debug configs, `logger=null`) instead of stopping them.

The word-attention picture and the projector are `newsrec.serving.export.TensorBoardPictures`.

Where the event files are: a run writes `<run folder>/tensorboard/` (runs under `outputs/`,
sweeps under `multirun/`); `tensorboard --logdir outputs` shows single runs, `--logdir
multirun` sweeps, and `tensorboard --logdir_spec outputs:outputs,multirun:multirun` both.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor as _LearningRateMonitor

Scalar = int | float | str | bool


def _class_name(target: str | None) -> str:
    return str(target or "none").rpartition(".")[2]


def _part(prefix: str, config: dict | None) -> dict[str, Scalar]:
    """`prefix`: the class name of a part's `_target_`; `prefix/<key>`: its settings."""
    if not config:
        return {prefix: "none"}
    flat: dict[str, Scalar] = {prefix: _class_name(config.get("_target_"))}
    for key, value in config.items():
        if key.startswith("_") or isinstance(value, dict):
            continue
        flat[f"{prefix}/{key}"] = _scalar(value)
    return flat


def _scalar(value: Any) -> Scalar:
    if isinstance(value, (bool, int, float, str)):
        return value
    return "none" if value is None else str(value)


def hyperparameters(cfg: DictConfig, hparams: dict, metrics: dict) -> dict[str, Scalar]:
    """The HPARAMS columns of a training run.

    `hparams`: the LightningModule's saved hyperparameters (what checkpoints carry: name,
    news_encoder, user_encoder, click_predictor, optimizer, scheduler, engine);
    `metrics`: what train.py measured (data, train_samples, params, ...)."""
    out: dict[str, Scalar] = {"model": str(hparams.get("name", "model"))}
    for part in ("news_encoder", "user_encoder", "click_predictor", "optimizer", "scheduler"):
        out.update(_part(part, hparams.get(part)))
    out.pop("optimizer/params", None)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    preprocess = data.get("preprocess") or {}
    embedding = cfg.get("embedding")
    out.update(
        {
            "engine": str(hparams.get("engine", "")),
            "data": str(metrics.get("data", "")),
            "data/train_impressions": int(metrics.get("train_impressions", 0)),
            "data/train_samples": int(metrics.get("train_samples", 0)),
            "data/val_split": str(metrics.get("val_split", "")),
            **{f"data/{k}": _scalar(data.get(k)) for k in ("npratio", "batch_size")},
            **{f"data/{k}": _scalar(preprocess.get(k)) for k in ("title_len", "history_len")},
            "embedding": str(embedding.get("kind", "")) if embedding else "none",
            "seed": int(cfg.seed),
            "precision": str(cfg.trainer.get("precision")),
            "max_epochs": _scalar(cfg.trainer.get("max_epochs")),
            "devices": int(metrics.get("devices", 1)),
            "params_without_embeddings": int(metrics.get("params_without_embeddings", 0)),
        }
    )
    return out


class LearningRateMonitor(_LearningRateMonitor):
    """Lightning's LearningRateMonitor that does nothing in a run without a logger."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._active = bool(trainer.loggers)
        if self._active:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_epoch_start(trainer, *args, **kwargs)
