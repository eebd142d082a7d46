"""The one LightningModule: loss, optimiser and evaluation for every model.

Models differ only in the `Recommender` they compose (conf/model). This module holds:
- the loss of the NRMS paper: softmax over the 1 + K candidates of a sample, negative
  log-likelihood of the clicked one (eq. 12-13);
- the optimiser and learning-rate schedule of conf/optimizer and conf/scheduler;
- evaluation: every batch scored by the one scorer (`newsrec.evaluation.scorer.Scorer`:
  the split's vectors once, with the fast engine), per-impression metrics gathered by global
  impression id (`ImpressionMetrics`), and on a synthetic world the oracle beside them.

What it needs from the data (the news table, the news rows each evaluation reads, whether
the data has the true click probabilities, what checkpoints must carry) is handed over by
the runner with `use_data`, not read from the trainer's datamodule.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from newsrec.constants import METRICS
from newsrec.data.info import DataInfo
from newsrec.evaluation.metrics import ImpressionMetrics
from newsrec.evaluation.rerank import rerank_scores
from newsrec.evaluation.scorer import Scorer
from newsrec.models.factory import build_recommender


def _plain(config: DictConfig | dict | None) -> dict | None:
    """A config node as plain containers (what checkpoints store and Hydra instantiates)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config


@dataclass
class ModuleData:
    """What the module needs from the data, handed over by the runner (`use_data`)."""

    news_table: dict[str, Tensor]  # every news' features (newsrec.data.info.NEWS_FEATURES)
    # news rows each evaluation stage ("val", "test") reads; a stage not here encodes all
    eval_rows: dict[str, Tensor] = field(default_factory=dict)
    has_truth: bool = False  # the true click probabilities are known: report the oracle
    checkpoint_extra: dict = field(default_factory=dict)  # saved with checkpoints (vocabulary)


class NewsRecModule(pl.LightningModule):
    """The model config's `_target_` (conf/model/_module.yaml): Hydra builds it with the
    data's sizes (`newsrec.build.module`).

    `news_encoder`, `user_encoder`, `click_predictor`: the parts' configs (`_partial_`, built
    here with `data`); `optimizer` / `scheduler`: conf/optimizer and conf/scheduler configs
    (`_partial_`), built in `configure_optimizers`; `engine`: "fast" or "plain"
    (newsrec.models.engine); `data`: `DataInfo.sizes()`; `name`: the model's name in reports.
    Every argument but the embeddings is saved in checkpoints, which rebuild the model alone.
    """

    def __init__(
        self,
        news_encoder: DictConfig | dict,
        user_encoder: DictConfig | dict,
        click_predictor: DictConfig | dict,
        data: DictConfig | dict,
        optimizer: DictConfig | dict | None = None,
        scheduler: DictConfig | dict | None = None,
        engine: str = "fast",
        name: str = "model",
        seed: int = 0,
        word_embeddings: Tensor | None = None,
        entity_embeddings: Tensor | None = None,
    ):
        super().__init__()
        # Plain containers, so that checkpoints hold plain data (save_hyperparameters reads
        # the arguments' current values).
        news_encoder, user_encoder, click_predictor = (
            _plain(c) for c in (news_encoder, user_encoder, click_predictor)
        )
        optimizer, scheduler, data = _plain(optimizer), _plain(scheduler), _plain(data)
        self.save_hyperparameters(ignore=["word_embeddings", "entity_embeddings"])
        info = DataInfo(
            **data, word_embeddings=word_embeddings, entity_embeddings=entity_embeddings
        )
        parts = (news_encoder, user_encoder, click_predictor)
        self.recommender = build_recommender(*parts, info, engine=engine)
        self.optimizer_config, self.scheduler_config = optimizer, scheduler
        self.name, self.seed = name, seed
        self.metrics = torch.nn.ModuleDict(
            {stage: ImpressionMetrics() for stage in ("val", "test", "val_oracle", "test_oracle")}
        )
        self.scorer: Scorer | None = None  # of the evaluation running, if one is
        self.eval_rows: dict[str, Tensor] = {}
        self.has_truth = False
        self._table_names: tuple[str, ...] = ()
        self.extra: dict = {}  # vocabulary etc., saved with checkpoints (see on_save_checkpoint)

    # -- what the data gives: the news table lives on the device ----------------------------
    def use_data(self, data: ModuleData) -> None:
        """Take the news table, evaluation rows, truth flag and checkpoint extras of `data`."""
        self.set_news_table(data.news_table)
        self.eval_rows = dict(data.eval_rows)
        self.has_truth = data.has_truth
        self.extra = data.checkpoint_extra

    def set_news_table(self, table: dict[str, Tensor]) -> None:
        # The table may carry more than NEWS_FEATURES (a PLM's plm_title, `row`, ...).
        self._table_names = tuple(table)
        for name in self._table_names:
            # Not persistent: a checkpoint can be evaluated on another split's table.
            self.register_buffer(f"news_{name}", table[name].to(self.device), persistent=False)
        # Every rank builds the same table: DDP must not broadcast it before each step.
        self._ddp_params_and_buffers_to_ignore = [f"news_{name}" for name in self._table_names]
        self.recommender.news_encoder.set_news_table(self.table)  # PLM: drops its cache

    @property
    def table(self) -> dict[str, Tensor]:
        if not self._table_names:
            raise RuntimeError(
                "the model has no news table: give it one with module.use_data(...) or "
                "module.set_news_table(datamodule.news_table()) before fit/test/predict"
            )
        return {name: self._buffers[f"news_{name}"] for name in self._table_names}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["newsrec"] = self.extra

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.extra = checkpoint.get("newsrec", {})

    # -- training -----------------------------------------------------------------------------
    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Dropout masks from a seed of (run seed, epoch, batch, rank): a run resumed from a
        # checkpoint continues exactly as the uninterrupted run would have, whatever else
        # (a DataLoader iterator, a sanity check) drew from the global generator meanwhile.
        key = f"{self.seed}:{self.current_epoch}:{batch_idx}:{self.global_rank}"
        torch.manual_seed(zlib.crc32(key.encode()))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self.recommender(batch, self.table)  # eq. 11: [B, 1 + K]
        # eq. 12-13: softmax over the clicked news and its K non-clicked companions, negative
        # log-likelihood of the clicked one (batch["target"] says which column it is)
        loss = F.cross_entropy(logits.float(), batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def configure_optimizers(self):
        if self.optimizer_config is None:
            raise ValueError("no optimizer config: pass optimizer=cfg.optimizer (conf/optimizer)")
        optimizer = hydra.utils.instantiate(self.optimizer_config)(params=self.parameters())
        if self.scheduler_config is None:
            return optimizer
        scheduler = hydra.utils.instantiate(self.scheduler_config)(optimizer=optimizer)
        # Stepped after each validation; ReduceLROnPlateau watches val/auc, like checkpoints.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/auc", "interval": "epoch"},
        }

    # -- evaluation ---------------------------------------------------------------------------
    def _start_eval(self, stage: str) -> None:
        rows = self.eval_rows.get(stage)  # only the news this stage reads
        rows = rows.to(self.device) if rows is not None else None
        # Epoch hooks run outside the steps' precision context (bf16 autocast): enter it.
        with self.trainer.precision_plugin.forward_context():
            self.scorer = Scorer(self.recommender, self.table, rows)

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        scores = self.scorer.scores(batch).float()
        if stage == "test":  # re-ranked before lists are cut (conf/rerank; eval.py sets it)
            scores = rerank_scores(self, batch, scores)
        self.metrics[stage].update(scores, batch["labels"], batch["impression"])
        if "truth" in batch:
            self.metrics[f"{stage}_oracle"].update(
                batch["truth"], batch["labels"], batch["impression"]
            )
        return scores

    def _end_eval(self, stage: str) -> None:
        self.scorer = None
        results = self.metrics[stage].compute()
        values = {f"{stage}/{name}": results[name] for name in METRICS}
        oracle = self.metrics[f"{stage}_oracle"]
        # Decided from the data, identically on every rank (compute() is a collective).
        if self.has_truth:
            truth = oracle.compute()
            values.update({f"{stage}/oracle_{name}": truth[name] for name in METRICS})
            oracle.reset()
        self.log_dict(
            {k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}, sync_dist=False
        )
        self.metrics[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        # Returned for callbacks: the beyond-accuracy metrics rank these (newsrec.evaluation.beyond).
        return {"scores": self._eval_step(batch, "test")}

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    def on_predict_epoch_start(self) -> None:
        self._start_eval("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Scores for a split without labels: what the leaderboard submission is made of."""
        return {
            "impression": batch["impression"].cpu(),
            "scores": rerank_scores(self, batch, self.scorer.scores(batch).float()).cpu(),
            "mask": batch["candidate_mask"].cpu(),
        }

    def on_predict_epoch_end(self) -> None:
        self.scorer = None  # the split's news vectors: ~1 GiB at MIND-large's 130k news
