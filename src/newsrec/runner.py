"""What train.py and eval.py do, as functions the tests can call with a composed config."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
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
from newsrec.constants import METRICS
from newsrec.data.datamodule import MindDataModule
from newsrec.data.features import check_model_data
from newsrec.data.plm_tokens import PlmTokenConfig
from newsrec.data.preprocess import Vocabulary
from newsrec.evaluation.predict import predict_unlabeled
from newsrec.models.module import ModuleData, NewsRecModule
from newsrec.utils.io import atomic_path, write_text

try:
    import fcntl
except ImportError:  # Windows: data preparation is not serialised (see _one_process_at_a_time)
    fcntl = None

log = logging.getLogger(__name__)
# Evaluation metrics are gathered by ImpressionMetrics itself, so logging them without
# sync_dist is right; Lightning's advice to add it does not apply.
warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
# Lightning 2.6 calls torch's deprecated `isinstance(x, LeafSpec)` on every batch it moves;
# the warning is Lightning's to fix and says nothing about this run.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"pytorch_lightning\.utilities\._pytree",
)


class _NoProductTips(logging.Filter):
    """Drops what Lightning prints at every run that is not for a newsrec user: the "💡 Tip"
    advertisements for its cloud products (litlogger, litmodels), and the note that it will
    not add its default model summary because conf/callbacks gives one. Every other message
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("Trainer already configured with model summary callbacks"):
            return False
        return not (text.startswith("💡 Tip") and ("litlogger" in text or "litmodels" in text))


# rank_zero_info logs through whichever of the two rank-zero loggers was imported last.
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoProductTips())


# Per-data-scale training settings in conf/data/*.yaml (learning rate, epochs, validation
# interval): train() and conf/trainer/default.yaml read them; the datamodule does not.
TRAINING_RECIPE = ("lr", "max_epochs", "val_check_interval")


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
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for key in TRAINING_RECIPE:  # read by train() and conf/trainer, not by the datamodule
        data.pop(key, None)
    return hydra.utils.instantiate(data, preprocess=preprocess, _convert_="all", **overrides)


def _plm_tokens(model: DictConfig | dict) -> dict | None:
    """The PLM tokenisation a model's news encoder reads (issue 13), None for the others."""
    if isinstance(model, DictConfig):
        model = OmegaConf.to_container(model, resolve=True)
    config = PlmTokenConfig.from_model(model)
    return None if config is None else {**asdict(config), "fields": list(config.fields)}


def _word_embeddings(cfg: DictConfig, datamodule: MindDataModule) -> torch.Tensor | None:
    """Pretrained rows for the vocabulary (conf/embedding), cached beside the preprocessed data.

    The vocabulary is built from training text, but most dev/test candidates are news never
    seen in train: every word of any split's news text (no labels read) that the pretrained
    file covers is added to it, so fresh news keep their pretrained vectors; words it does not
    cover stay <unk>. The datamodule is then preprocessed again with that vocabulary.
    """
    spec = cfg.get("embedding")
    if spec is None or spec.get("kind") == "random":
        return None
    from newsrec.data import glove

    vocab = datamodule.data.vocab
    paths = datamodule.paths
    unseen = glove.words_outside(
        [paths.train, paths.dev, paths.test], datamodule.preprocess_config.vocab_fields, vocab.words
    )
    key = hashlib.sha256(
        json.dumps([OmegaConf.to_container(spec), vocab.words, unseen]).encode()
    ).hexdigest()
    cached = datamodule.cache_dir / f"embedding-{key[:16]}.npy"
    added_file = cached.with_suffix(".words.json")
    if cached.exists() and added_file.exists():
        matrix, added = np.load(cached), json.loads(added_file.read_text())
    else:
        spec_dict = OmegaConf.to_container(spec, resolve=True)
        glove_dir = Path(cfg.paths.data_dir) / "glove"
        matrix, added = glove.load_pretrained(spec_dict, glove_dir, vocab.words, unseen, cfg.seed)
        write_text(added_file, json.dumps(added))
        with atomic_path(cached) as tmp:  # the matrix last: it marks the pair complete
            np.save(tmp, matrix)
    if added:
        before = _unk_shares(datamodule)
        datamodule.use_vocabulary(dataclasses.replace(vocab, words=[*vocab.words, *added]))
        after = _unk_shares(datamodule)
        for split in before:
            log.info(
                "%s title tokens that are <unk>: %.2f%% with the training vocabulary, %.2f%% "
                "with the %s words of other splits that the pretrained file covers",
                split,
                100 * before[split],
                100 * after[split],
                f"{len(added):,}",
            )
    return torch.from_numpy(matrix)


def _unk_shares(datamodule: MindDataModule) -> dict[str, float]:
    """Share of <unk> among the title tokens of the news each dev/test impression shows."""
    title = np.asarray(datamodule.data.news["title"])
    shares = {}
    for split in ("dev", "test"):
        if split in datamodule.data.splits:
            tokens = title[datamodule.eval_news(split).numpy()]
            shares[split] = float((tokens == 1).sum() / max(1, (tokens > 0).sum()))
    return shares


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


def module_data(
    datamodule: MindDataModule, stages: tuple[str, ...] = ("val", "test")
) -> ModuleData:
    """What the LightningModule needs from `datamodule` (set up), for evaluation `stages`."""
    split = {"val": "val", "test": datamodule.test_split}
    return ModuleData(
        news_table=datamodule.news_table(),
        eval_rows={stage: datamodule.eval_news(split[stage]) for stage in stages},
        has_truth=bool(datamodule.has_truth),
        checkpoint_extra=datamodule.checkpoint_extra(),
    )


def _loggers(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]


def _callbacks(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, written to a temporary name and renamed."""
    write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


def _print_metrics(metrics: dict, stage: str, label: str = "") -> None:
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
        title = f"{stage} metrics ({label})" if label else f"{stage} metrics"
        print(f"{title}:\n" + "\n".join(rows), flush=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user causes and fixes (bad or missing files, data settings, downloads)."""
    from newsrec.data.download import CorruptZipError, DownloadError, UnsafeZipError
    from newsrec.data.mind import DataError

    return (DataError, DownloadError, CorruptZipError, UnsafeZipError, FileNotFoundError)


def run_cli(function, cfg: DictConfig):
    """train.py / eval.py: run `function(cfg)`; a user error prints its message (what, where,
    what to do) and exits with status 1, without a traceback unless HYDRA_FULL_ERROR=1."""
    try:
        return function(cfg)
    except user_errors() as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on the validation and test splits, write metrics.json.

    A labeled test split is tested; an unlabeled one (MIND-large, the synthetic worlds) gets
    the leaderboard's prediction.zip in the run folder, scored against truth.txt where the
    data keeps one. Returns the metrics.
    """
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    with _one_process_at_a_time(cfg.paths.data_dir):
        datamodule = _datamodule(
            cfg, list(cfg.model.get("inputs", ["title"])), plm=_plm_tokens(cfg.model)
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        word_embeddings = _word_embeddings(cfg, datamodule)
    _warn_if_random_words_on_mind(cfg)
    info = datamodule.info
    module = NewsRecModule(
        model=cfg.model,
        data=info.sizes(),
        seed=cfg.seed,
        word_embeddings=word_embeddings,
        entity_embeddings=info.entity_embeddings,
        optimizer=cfg.get("optimizer"),
        scheduler=cfg.get("scheduler"),
    )
    check_model_data(module.recommender.news_encoder, datamodule, cfg.model.get("name", "model"))
    module.use_data(module_data(datamodule, ("val", "test") if cfg.get("test", True) else ("val",)))
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
    samples = datamodule.train_samples()
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
        "lr": (module.optimizer_config or {}).get("lr"),  # conf/optimizer, or data.lr on MIND
        # What the numbers were measured on (the protocol): samples = clicks trained on.
        "train_samples": len(samples),
        "train_clicks_dropped": samples.dropped,  # their impression has no non-click
        "train_impressions": len(datamodule.fit_rows),
        "val_split": datamodule.val_split,
        "test_split": datamodule.test_split,
    }
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["val/auc_best"] = float(checkpoint.best_model_score)
    if best:  # every validation metric of the checkpoint kept (MIND-large: its dev metrics)
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        )
        _print_metrics(metrics, "val", f"best checkpoint on {datamodule.val_split}")
    if cfg.get("test", True):
        start = time.perf_counter()
        split = datamodule.data.splits[datamodule.test_split]
        if split.labeled:
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics.update(
                {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            )
        else:
            metrics.update(predict_unlabeled(trainer, module, datamodule, out, best or None))
        metrics["test_time_s"] = round(time.perf_counter() - start, 2)
        _print_metrics(metrics, "test", datamodule.test_split)
    for logger in loggers:
        params = OmegaConf.to_container(cfg, resolve=True)
        params.pop("paths", None)
        logger.log_hyperparams(
            _flatten(params), {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))}
        )
        logger.finalize("success")
    write_metrics(out / "metrics.json", metrics)
    return metrics


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
    check_model_data(
        module.recommender.news_encoder, datamodule, str(module.hparams["model"].get("name"))
    )
    module.use_data(module_data(datamodule, ("test",)))
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
    else:
        metrics.update(predict_unlabeled(trainer, module, datamodule, out))
    _print_metrics(metrics, "test")
    write_metrics(out / "metrics.json", metrics)
    return metrics
