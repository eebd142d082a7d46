"""What `python train.py` does: build, fit, evaluate the best checkpoint, report.

    metrics = train(cfg)        # cfg: conf/train.yaml composed with the command line

A labeled test split is tested; an unlabeled one (MIND-large, the synthetic worlds) gets the
leaderboard's prediction.zip in the run folder, scored against truth.txt where the data keeps
one. Everything ends in `metrics.json` in the run folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from newsrec import build
from newsrec.cli import print_metrics, write_metrics
from newsrec.data.datamodule import MindDataModule
from newsrec.data.features import check_model_data
from newsrec.evaluation.predict import predict_unlabeled
from newsrec.models.module import NewsRecModule
from newsrec.models.summary import count_parameters

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit `cfg.model` on `cfg.data`, evaluate its best checkpoint, write metrics.json."""
    pl.seed_everything(cfg.seed, workers=True)
    dm, module, trainer = setup(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    metrics = describe(cfg, dm, module, trainer, time.perf_counter() - start)
    metrics.update(evaluate_best(cfg, dm, module, trainer))
    report(cfg, trainer, metrics)
    return metrics


def setup(cfg: DictConfig) -> tuple[MindDataModule, NewsRecModule, pl.Trainer]:
    """The prepared data, the model Hydra builds for it, and the Trainer."""
    dm, words = build.prepared_datamodule(cfg)
    needed = build.declared_inputs(cfg.model).features  # refused before the model is built
    check_model_data(needed, dm, cfg.model.get("name", "model"))
    _warn_if_random_words_on_mind(cfg)
    module = build.module(cfg, dm.info, words)
    stages = ("val", "test") if cfg.get("test", True) else ("val",)
    module.use_data(build.module_data(dm, stages))
    if cfg.get("compile"):
        # In place (checkpoint keys unchanged). Batches vary in size (distinct news, text
        # cut to the longest), hence dynamic shapes.
        module.recommender.news_encoder.compile(dynamic=True)
        module.recommender.user_encoder.compile(dynamic=True)
    return dm, module, build.trainer(cfg)


def describe(
    cfg: DictConfig, dm: MindDataModule, module: NewsRecModule, trainer: pl.Trainer, seconds: float
) -> dict:
    """What was trained, on what, and how long it took: the first half of metrics.json."""
    samples = dm.train_samples()
    return {
        "model": module.name,
        "inputs": list(module.recommender.inputs),
        "seed": int(cfg.seed),
        "data": cfg.data.source.get("preset", cfg.data.source.get("variant", "")),
        "params": count_parameters(module.recommender, embeddings=True),
        "params_without_embeddings": count_parameters(module.recommender),
        "train_time_s": round(seconds, 2),
        "epochs": int(trainer.current_epoch),
        "devices": int(trainer.world_size),
        "lr": (module.optimizer_config or {}).get("lr"),
        # What the numbers were measured on (the protocol): samples = clicks trained on.
        "train_samples": len(samples),
        "train_clicks_dropped": samples.dropped,  # their impression has no non-click
        "train_impressions": len(dm.fit_rows),
        "val_split": dm.val_split,
        "test_split": dm.test_split,
    }


def evaluate_best(
    cfg: DictConfig, dm: MindDataModule, module: NewsRecModule, trainer: pl.Trainer
) -> dict:
    """The best checkpoint's validation metrics (it was chosen on them) and test metrics."""
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    metrics: dict = {"best_checkpoint": best}
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["val/auc_best"] = float(checkpoint.best_model_score)
    if best:  # every validation metric of the checkpoint kept (MIND-large: its dev metrics)
        trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)
        metrics.update(_logged(trainer, "val/"))
        print_metrics(metrics, "val", f"best checkpoint on {dm.val_split}")
    if cfg.get("test", True):
        start = time.perf_counter()
        if dm.data.splits[dm.test_split].labeled:
            trainer.test(module, datamodule=dm, ckpt_path=best or None)
            metrics.update(_logged(trainer, "test/"))
        else:
            out = Path(cfg.paths.output_dir)
            metrics.update(predict_unlabeled(trainer, module, dm, out, best or None))
        metrics["test_time_s"] = round(time.perf_counter() - start, 2)
        print_metrics(metrics, "test", dm.test_split)
    return metrics


def report(cfg: DictConfig, trainer: pl.Trainer, metrics: dict) -> None:
    """metrics.json in the run folder, and the hyperparameters beside the final metrics in
    each logger (TensorBoard's HPARAMS tab)."""
    final = {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))}
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("paths", None)
    for logger in trainer.loggers:
        logger.log_hyperparams(_flatten(params), final)
        logger.finalize("success")
    write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)


def _logged(trainer: pl.Trainer, prefix: str) -> dict:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def _warn_if_random_words_on_mind(cfg: DictConfig) -> None:
    spec = cfg.get("embedding")
    on_mind = str(cfg.data.source.get("_target_", "")).endswith("MindSource")
    if on_mind and (spec is None or spec.get("kind") == "random"):
        log.warning(
            "training on MIND with random word vectors (embedding=random): published MIND "
            "numbers use GloVe; expect lower AUC. Drop embedding=random to use GloVe 840B"
        )


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
