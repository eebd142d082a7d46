"""Config -> objects: the datamodule, the LightningModule and the Trainer of a run.

The tasks (`newsrec.train`, `newsrec.evaluate`, recommend.py, the Python API) and the tests
and benchmarks all build through here, so a run is assembled one way:

    inputs = declared_inputs(cfg.model)          what the model's news encoder reads
    dm = datamodule(cfg, inputs); prepare(dm)     preprocess exactly that, cached
    model = module(cfg, dm)                       Hydra builds cfg.model with the data's sizes
    trainer(cfg)                                  Lightning's Trainer with callbacks and loggers
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

import newsrec.config  # noqa: F401  (registers the config resolvers)
from newsrec.data.arrays import Vocabulary
from newsrec.data.datamodule import MindDataModule
from newsrec.data.info import DataInfo, NewsInputs
from newsrec.data.pretrained import word_embeddings
from newsrec.models.module import ModuleData, NewsRecModule

try:
    import fcntl
except ImportError:  # Windows: data preparation is not serialised (see preparing_data)
    fcntl = None

log = logging.getLogger(__name__)


def declared_inputs(model: DictConfig | dict) -> NewsInputs:
    """What the news encoder of a model config reads (`NewsEncoder.declare`), without
    building it: the data side preprocesses exactly that."""
    if isinstance(model, DictConfig):
        model = OmegaConf.to_container(model, resolve=True)
    encoder = model["news_encoder"]
    settings = {k: v for k, v in encoder.items() if not k.startswith("_")}
    return hydra.utils.get_class(encoder["_target_"]).declare(**settings)


def datamodule(
    cfg: DictConfig, inputs: NewsInputs | None = None, preprocess: dict | None = None
) -> MindDataModule:
    """`cfg.data` for a model that reads `inputs`; `preprocess` overrides its settings (a
    checkpoint's saved lengths and vocabulary fields)."""
    settings = OmegaConf.to_container(cfg.data.preprocess, resolve=True)
    settings.update(preprocess or {})
    return hydra.utils.instantiate(
        cfg.data,
        preprocess=settings,
        inputs=asdict(inputs or NewsInputs()),
        _convert_="all",
    )


@contextlib.contextmanager
def preparing_data(data_dir: str | Path):
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


def prepared_datamodule(
    cfg: DictConfig, stage: str = "fit"
) -> tuple[MindDataModule, torch.Tensor | None]:
    """The datamodule of a training run, prepared and set up, and the pretrained word vectors
    of its vocabulary (None with embedding=random)."""
    with preparing_data(cfg.paths.data_dir):
        dm = datamodule(cfg, declared_inputs(cfg.model))
        dm.prepare_data()
        dm.setup(stage)
        spec = cfg.get("embedding")
        spec = None if spec is None else OmegaConf.to_container(spec, resolve=True)
        words = word_embeddings(spec, cfg.paths.data_dir, cfg.seed, dm)
    return dm, words


def module(cfg: DictConfig, info: DataInfo, words: torch.Tensor | None = None) -> NewsRecModule:
    """Hydra builds `cfg.model` (the LightningModule) for data of sizes `info` (a datamodule's
    `info`, with its entity vectors), with pretrained word vectors `words` if any."""
    try:
        return hydra.utils.instantiate(
            cfg.model,
            data=info.sizes(),
            seed=cfg.seed,
            word_embeddings=words,
            entity_embeddings=info.entity_embeddings,
            _recursive_=False,  # the parts are built by the module, with the data's sizes
        )
    except InstantiationException as err:
        # A model's own message (a width that does not fit, a PLM without that many layers)
        # says what to change; Hydra's wrapper around it only repeats the target's name.
        raise (err.__cause__ or err) from None


def module_data(dm: MindDataModule, stages: tuple[str, ...] = ("val", "test")) -> ModuleData:
    """What the LightningModule needs from `dm` (set up), for evaluation `stages`."""
    split = {"val": "val", "test": dm.test_split}
    return ModuleData(
        news_table=dm.news_table(),
        eval_rows={stage: dm.eval_news(split[stage]) for stage in stages},
        has_truth=bool(dm.has_truth),
        checkpoint_extra=dm.checkpoint_extra(),
    )


def trainer(cfg: DictConfig) -> pl.Trainer:
    """Lightning's Trainer of `cfg.trainer` with the run's callbacks and loggers."""
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def checkpoint_datamodule(
    cfg: DictConfig, path: Path, checkpoint: dict | None = None
) -> MindDataModule:
    """`cfg.data` preprocessed with the checkpoint's vocabularies and lengths, so word and
    user ids mean what they meant in training. `checkpoint`: the file's content, if read
    already; else it is read and checked here (newsrec.checkpoints)."""
    from newsrec.checkpoints import read_checkpoint

    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path)
    extra = checkpoint.get("newsrec", {})
    saved = extra.get("preprocess", {})
    keep = ("title_len", "abstract_len", "history_len", "vocab_fields")
    dm = datamodule(
        cfg,
        declared_inputs(checkpoint.get("hyper_parameters", {})),
        preprocess={k: saved[k] for k in keep if k in saved},
    )
    if "vocab" in extra:
        dm.vocab = Vocabulary(**extra["vocab"])
    return dm
