"""RADio's metrics of the test split's top-k lists, logged as `test/<name>@k` (metrics.json).

Feeds `RadioMetric` from the scores the module's test (or predict) step returns, after any
re-ranker (`newsrec.evaluation.rerank`): each impression's top-k list, its user's history
(the batch's `history[owner]`) and its candidates as the pool. The per-news features come
from `newsrec.evaluation.news_features`, computed once per news table and cached beside the
preprocessing cache. Options (conf/callbacks: `callbacks.radio.divergence=kl`, ...): `k`,
`divergence` (js | kl), `discount` (mrr | ndcg | none), `alpha`, `bins`,
`fragmentation_by` (subcategory | category), `pairs`, `seed`, `sample`.

`sample` bounds the cost on large splits as RADio's authors did (their figures come from a
random sample of 35,000 users): a split of more impressions than `sample` (default 200,000:
all of MIND-small's dev, 8% of MIND-large's test) is judged on the impressions whose hashed
global id falls under sample / impressions, the same ones whatever the batches or processes;
`radio_lists@k` says how many lists were judged.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytorch_lightning as pl
import torch

from newsrec.evaluation.news_features import load_or_compute
from newsrec.evaluation.radio_metric import NAMES, NewsTables, RadioMetric, settings_from
from newsrec.serving.ranking import top_k_candidates

log = logging.getLogger(__name__)


def sampled(impression: torch.Tensor, rate: float, seed: int = 0) -> torch.Tensor:
    """Positions of the impressions [B] whose hashed global id falls under `rate`: a fixed
    share of a split whatever the batches or processes (a multiplicative hash, mod 2^32)."""
    if rate >= 1.0:
        return torch.arange(len(impression), device=impression.device)
    hashed = ((impression.long() + seed) * 2654435761) % (1 << 32)
    return torch.nonzero(hashed < int(rate * (1 << 32))).squeeze(1)


def news_files(paths) -> list[Path]:
    """The news files of a data source, in news-table order: MIND's news.tsv of train, dev,
    test; EB-NeRD's articles.parquet files."""
    if getattr(paths, "articles", None):
        return [Path(f) for f in paths.articles]
    folders = (paths.train, paths.dev, paths.test)
    return [Path(f) / "news.tsv" for f in folders if f is not None]


class RadioCallback(pl.Callback):
    """RADio metrics beside the accuracy and beyond-accuracy metrics of a test run."""

    def __init__(self, k: int = 10, sample: int = 200_000, **options) -> None:
        settings, rest = settings_from(options)
        self.metric = RadioMetric(k, settings, **rest)
        self.k, self.sample, self.active, self.rate = k, sample, False, 1.0
        self.results: dict[str, float] = {}  # of the last predict epoch (prediction.zip runs)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()
        datamodule = getattr(trainer, "datamodule", None)
        self.active = getattr(datamodule, "data", None) is not None
        if not self.active:  # trainer.test(dataloaders=...): no news files to read
            return
        features = load_or_compute(
            news_files(datamodule.paths), datamodule.cache_dir, progress=trainer.is_global_zero
        )
        self.metric.set_tables(NewsTables.build(pl_module.table, features))
        impressions = len(datamodule.split_rows(datamodule.test_split)[1])
        self.rate = min(1.0, self.sample / max(1, impressions))
        missing = set(NAMES) - self.metric.tables.available()
        if missing:
            log.warning("RADio: %s skipped (their news features are missing)", sorted(missing))

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self.active or not isinstance(outputs, dict) or "scores" not in outputs:
            return
        keep = sampled(batch["impression"], self.rate, self.metric.seed)
        if not len(keep):
            return
        scores = outputs["scores"].to(batch["candidates"].device)[keep]
        candidates, mask = batch["candidates"][keep], batch["candidate_mask"][keep]
        rows, _ = top_k_candidates(scores, candidates, mask, self.k)
        history = batch["history"] * batch["history_mask"]
        owner = batch["owner"][keep]
        self.metric.update(rows, batch["impression"][keep], history[owner], candidates, mask)

    def _values(self) -> dict[str, float]:
        values = self.metric.compute()  # a collective under DDP: every rank
        self.metric.reset()
        # An undefined value (no list had what a metric reads) is left out: NaN is no JSON.
        return {f"test/{name}": v for name, v in values.items() if not math.isnan(v)}

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            values = self._values()
            logged = {n: torch.tensor(v, dtype=torch.float32) for n, v in values.items()}
            pl_module.log_dict(logged, sync_dist=False)

    # An unlabeled test split is predicted, not tested: the lists need no labels; the values
    # wait in `results` for newsrec.evaluation.predict (Lightning logs nothing in predict).
    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.results = {}
        self.on_test_epoch_start(trainer, pl_module)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            self.results = self._values()


def radio_for(datamodule, table: dict[str, torch.Tensor], k: int, options=None) -> RadioMetric:
    """A `RadioMetric` ready for lists of `datamodule`'s news table `table` (recommend.py)."""
    settings, rest = settings_from(dict(options or {}))
    metric = RadioMetric(k, settings, **rest)
    features = load_or_compute(news_files(datamodule.paths), datamodule.cache_dir)
    metric.set_tables(NewsTables.build(table, features))
    return metric
