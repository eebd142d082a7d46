"""The one LightningModule: loss, optimiser and evaluation for every model.

Models differ only in the `Recommender` they compose (conf/model). This module holds:
- the loss of the NRMS paper: softmax over the 1 + K candidates of a sample, negative
  log-likelihood of the clicked one;
- Adam with the model config's learning rate;
- evaluation: news vectors for the whole table once per evaluation (when the model allows
  it), each distinct history once per batch, per-impression metrics gathered by global
  impression id (`ImpressionMetrics`), and on a synthetic world the oracle beside them.
"""

from __future__ import annotations

import zlib

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from newsrec.data.info import NEWS_FEATURES, DataInfo
from newsrec.metrics import ImpressionMetrics
from newsrec.models.recommender import Recommender

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


class NewsRecModule(pl.LightningModule):
    def __init__(
        self,
        model: DictConfig | dict,
        data: dict,
        seed: int = 0,
        word_embeddings: Tensor | None = None,
        entity_embeddings: Tensor | None = None,
    ):
        super().__init__()
        if isinstance(model, DictConfig):
            model = OmegaConf.to_container(model, resolve=True)
        self.save_hyperparameters(ignore=["word_embeddings", "entity_embeddings"])
        info = DataInfo(
            **data, word_embeddings=word_embeddings, entity_embeddings=entity_embeddings
        )
        self.recommender = Recommender.from_config(model, info)
        self.lr = float(model.get("lr", 1e-4))
        self.weight_decay = float(model.get("weight_decay", 0.0))
        self.seed = seed
        self.metrics = torch.nn.ModuleDict(
            {stage: ImpressionMetrics() for stage in ("val", "test", "val_oracle", "test_oracle")}
        )
        self._news_vectors: Tensor | None = None
        self._history_inputs: Tensor | None = None
        self.extra: dict = {}  # vocabulary etc., saved with checkpoints (see on_save_checkpoint)

    # -- the news table lives on the device --------------------------------------------------
    def set_news_table(self, table: dict[str, Tensor]) -> None:
        # PLM encoders (issue 13): the table may carry more than NEWS_FEATURES (plm_title...),
        # and `row`, the row index, keys encoders that cache per-news work.
        table = {**table, "row": torch.arange(len(table["title"]))}
        self._table_names = tuple(table)
        for name in self._table_names:
            # Not persistent: a checkpoint can be evaluated on another split's table.
            self.register_buffer(f"news_{name}", table[name].to(self.device), persistent=False)
        # Every rank builds the same table: DDP must not broadcast it before each step.
        self._ddp_params_and_buffers_to_ignore = [f"news_{name}" for name in self._table_names]
        if hasattr(self.recommender.news_encoder, "set_news_table"):  # PLM: drop its cache
            self.recommender.news_encoder.set_news_table(self.table)

    @property
    def table(self) -> dict[str, Tensor]:
        names = getattr(self, "_table_names", NEWS_FEATURES)
        return {name: getattr(self, f"news_{name}") for name in names}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            self.set_news_table(datamodule.news_table())
            self.extra = datamodule.checkpoint_extra()

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
        logits = self.recommender(batch, self.table)  # [B, 1 + K]
        loss = F.cross_entropy(logits.float(), batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def configure_optimizers(self):
        # The fused kernel updates all parameters in one pass: ~7x faster than the default on
        # CPU, which matters with a 300-d embedding of tens of thousands of words.
        return torch.optim.Adam(
            self.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=True
        )

    # -- evaluation ---------------------------------------------------------------------------
    def _start_eval(self, split: str) -> None:
        self._news_vectors = self._history_inputs = None
        if self.recommender.cacheable:
            datamodule = getattr(self.trainer, "datamodule", None)
            rows = None
            if datamodule is not None and hasattr(datamodule, "eval_news"):
                split = datamodule.test_split if split == "test" else split
                rows = datamodule.eval_news(split).to(self.device)  # only what the split reads
            # Epoch hooks run outside the steps' precision context (bf16 autocast): enter it.
            with self.trainer.precision_plugin.forward_context():
                self._news_vectors = self.recommender.encode_all_news(self.table, rows)
                self._history_inputs = self.recommender.history_inputs(self._news_vectors)

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        """Scores [B, C] of an evaluation batch, by the fast path where the model allows it."""
        if self._news_vectors is None:
            return self.recommender.exact_scores(batch, self.table)
        return self.recommender.cached_scores(batch, self._news_vectors, self._history_inputs)

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        scores = self.score(batch).float()
        self.metrics[stage].update(scores, batch["labels"], batch["impression"])
        if "truth" in batch:
            self.metrics[f"{stage}_oracle"].update(
                batch["truth"], batch["labels"], batch["impression"]
            )

    def _end_eval(self, stage: str) -> None:
        self._news_vectors = self._history_inputs = None
        results = self.metrics[stage].compute()
        values = {f"{stage}/{name}": results[name] for name in METRICS}
        oracle = self.metrics[f"{stage}_oracle"]
        # Decided from the data, identically on every rank (compute() is a collective).
        if getattr(getattr(self.trainer, "datamodule", None), "has_truth", False):
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

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    def on_predict_epoch_start(self) -> None:
        self._start_eval("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Scores for a split without labels: what the leaderboard submission is made of."""
        return {
            "impression": batch["impression"].cpu(),
            "scores": self.score(batch).float().cpu(),
            "mask": batch["candidate_mask"].cpu(),
        }
