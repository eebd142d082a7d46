"""Beyond-accuracy metrics of top-k lists: diversity, coverage, novelty, personalization.

Accuracy metrics (`newsrec.evaluation.metrics`) ask whether the clicked news ranks high; these ask what
the lists a model would show look like. Definitions follow Kaminskas & Bridge, "Diversity,
serendipity, novelty, and coverage" (ACM TiiS 7(1), 2016), as news recommendation uses them
since the RecSys 2024 challenge (ebrec's `ebrec.evaluation.beyond_accuracy`). A list L is the
set of news a model ranks first (at most k); |L| < k when an impression has fewer candidates.

- intra-list diversity, ILD(L) = 1 / (|L| (|L| - 1)) * sum_{i != j in L} dist(i, j), the
  mean over lists with |L| >= 2; dist is 1 - [same category] (`diversity_category@k`) or the
  cosine distance 1 - cos(v_i, v_j) of the model's own news vectors (`diversity_vector@k`).
- coverage = |union of all lists| / |catalogue|, the catalogue being every news a list could
  have held (the candidates of the split, or the whole news table with pool=all).
- novelty(L) = 1/|L| * sum_{i in L} -log2 p(i), the mean over lists, with p(i) the click
  popularity of i in the TRAIN split: (train impressions with a click on i + 1) / (train
  impressions + 1). The +1 keeps news never clicked in train (most dev news) finite: they
  get the largest self-information, log2(impressions + 1).
- personalization = 1 - mean over pairs of lists (a, b) of cos(a, b) = |a & b| / sqrt(|a||b|)
  (the lists as binary news vectors). Exact and linear in the number of list entries: the sum
  over pairs is sum over news i of ((sum_{a owns i} w_a)^2 - sum_{a owns i} w_a^2) / 2 with
  w_a = 1 / sqrt(|a|), so no pair is ever enumerated and no sample is needed.

Lists are one per impression (the leaderboard's unit). With pool=impression two impressions
rarely share candidates, so personalization is near 1 by construction; it means most with
pool=all.

`BeyondAccuracy` keeps per-list values and the lists keyed by global impression id, gathers
them across DDP processes and keeps one entry per impression, as `ImpressionMetrics` does,
so 2 processes report what 1 does. `BeyondAccuracyCallback` feeds it from a test run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from newsrec.data.ragged import slices
from newsrec.serving.ranking import top_k_candidates

NAMES = ("diversity_category", "diversity_vector", "coverage", "novelty", "personalization")


# -- definitions, vectorised over lists ------------------------------------------------------
def _pair_mean(distance: Tensor, valid: Tensor) -> Tensor:
    """Mean of `distance` [L, k, k] over ordered pairs i != j of valid entries -> [L] (NaN
    where a list has fewer than two)."""
    pairs = valid[:, :, None] & valid[:, None, :]
    pairs &= ~torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
    count = pairs.sum((1, 2))
    total = (distance.double() * pairs).sum((1, 2))
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def intra_list_diversity_category(categories: Tensor, valid: Tensor) -> Tensor:
    """ILD of each list [L] by category: the share of ordered pairs in different categories.

    categories: [L, k] category of each list entry; valid: [L, k] True for real entries.
    """
    return _pair_mean(categories[:, :, None] != categories[:, None, :], valid)


def intra_list_diversity_vector(vectors: Tensor, valid: Tensor) -> Tensor:
    """ILD of each list [L] by cosine distance of news vectors [L, k, D]. A zero vector has
    cosine 0 with everything (distance 1)."""
    unit = F.normalize(vectors.float(), dim=-1)  # float32: a fifth of float64's time here
    return _pair_mean(1.0 - (unit @ unit.transpose(1, 2)).double(), valid)


def self_information(clicks: Tensor | np.ndarray, impressions: int) -> Tensor:
    """-log2 p(i) per news [num_news] from train click counts [num_news] (see module doc)."""
    clicks = torch.as_tensor(clicks, dtype=torch.float64)
    return -torch.log2((clicks + 1.0) / (impressions + 1.0))


def list_novelty(information: Tensor, valid: Tensor) -> Tensor:
    """Mean self-information of each list's entries [L, k] -> [L] (NaN for an empty list)."""
    count = valid.sum(1)
    total = (information.double() * valid).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def _as_sets(lists: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Flat (list index, news) pairs of each list's distinct valid entries.

    Each list is sorted on its own and an entry equal to its left neighbour dropped (a news
    twice in one list counts once): memory linear in the entries, where a unique over the
    pairs took 4 GiB for MIND-large's 2.4M test lists.
    """
    ordered, _ = torch.sort(torch.where(valid, lists, -1), dim=1)
    keep = ordered >= 0
    keep[:, 1:] &= ordered[:, 1:] != ordered[:, :-1]
    owner = torch.arange(lists.shape[0], device=lists.device)[:, None].expand_as(lists)
    return owner[keep], ordered[keep]


def coverage(lists: Tensor, valid: Tensor, catalogue_size: int) -> float:
    """Distinct news in all lists [L, k] over the catalogue's size."""
    if catalogue_size <= 0:
        return math.nan
    listed = lists[valid]
    if not len(listed):
        return 0.0
    return int((torch.bincount(listed) > 0).sum()) / catalogue_size  # news are table rows


def personalization(lists: Tensor, valid: Tensor) -> float:
    """1 - mean cosine similarity over all pairs of non-empty lists [L, k] (exact, linear)."""
    owner, news = _as_sets(lists, valid)
    sizes = torch.bincount(owner, minlength=lists.shape[0]).double()
    n = int((sizes > 0).sum())
    if n < 2:
        return math.nan
    weight = sizes[owner].rsqrt()  # w_a of each entry
    s = torch.bincount(news, weight)  # per news row: sum of w_a over the lists holding it
    q = torch.bincount(news, weight * weight)
    similar = float(((s * s - q) / 2).sum())
    return 1.0 - similar / (n * (n - 1) / 2)


# -- the metric over an evaluation epoch -----------------------------------------------------
class BeyondAccuracy(Metric):
    """The five metrics above over an epoch's top-k lists, exact under DDP.

    `update` takes each list's news rows and computes the per-list values (ILD, novelty)
    where the news vectors are; `compute` gathers lists and values by global impression id
    and keeps one entry per impression (a DistributedSampler's repeats count once).
    """

    full_state_update = False

    def __init__(self, k: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = k
        for name in ("impressions", "lists", "diversity_category", "diversity_vector", "novelty"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        lists: Tensor,
        impression: Tensor,
        category: Tensor,
        information: Tensor,
        vectors: Tensor | None = None,
    ) -> None:
        """Add top-k lists [B, k'] (news rows, -1 where empty; k' <= k) of impressions [B].

        category: [num_news] category of every news row; information: [num_news]
        self-information (`self_information`); vectors: [B, k', D] the entries' news vectors,
        or None when the model has none to compare (then `diversity_vector` is NaN).
        """
        lists = F.pad(lists, (0, self.k - lists.shape[1]), value=-1)  # [B, k]
        valid = lists >= 0
        rows = lists.clamp(min=0)
        self.impressions.append(impression.long())
        self.lists.append(lists.int())  # news rows: int32 halves 2.4M lists
        self.diversity_category.append(intra_list_diversity_category(category[rows], valid))
        self.novelty.append(list_novelty(information.to(rows.device)[rows], valid))
        if vectors is None:
            ild = torch.full(valid.shape[:1], torch.nan, dtype=torch.float64)
        else:
            vectors = F.pad(vectors, (0, 0, 0, self.k - vectors.shape[1]))
            ild = intra_list_diversity_vector(vectors, valid)
        self.diversity_vector.append(ild.to(lists.device))

    def compute(self, catalogue_size: int = 0) -> dict[str, float]:
        """`name@k` -> value; coverage needs the catalogue's size."""
        names = [f"{name}@{self.k}" for name in NAMES]
        if isinstance(self.impressions, list) and not self.impressions:
            return dict.fromkeys(names, math.nan)
        impressions = dim_zero_cat(self.impressions).cpu()
        _, order = torch.sort(impressions, stable=True)
        first = torch.ones(len(order), dtype=torch.bool)
        first[1:] = impressions[order][1:] != impressions[order][:-1]
        keep = order[first]
        lists = dim_zero_cat(self.lists).cpu()[keep]
        valid = lists >= 0

        def mean(state: list[Tensor] | Tensor) -> float:
            values = dim_zero_cat(state).cpu()[keep]
            values = values[~values.isnan()]
            return float(values.mean()) if len(values) else math.nan

        values = (
            mean(self.diversity_category),
            mean(self.diversity_vector),
            coverage(lists, valid, catalogue_size),
            mean(self.novelty),
            personalization(lists, valid),
        )
        return dict(zip(names, values, strict=True))


class BeyondAccuracyCallback(pl.Callback):
    """Beyond-accuracy metrics of the test split's top-k lists (pool=impression), logged as
    `test/<name>@k` beside the accuracy metrics, hence in metrics.json.

    Reads the scores the module's test_step returns; popularity comes from the datamodule's
    train split and the catalogue is the distinct candidates of the tested split. News
    vectors for `diversity_vector` come from the module's scorer (`Scorer.list_vectors`;
    NPA: each list's news as its user reads them).
    """

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.metric = BeyondAccuracy(k)
        self.active = False
        self.results: dict[str, float] = {}  # of the last predict epoch (prediction.zip runs)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()
        # Popularity and the catalogue come from the data: a test run without the
        # datamodule (trainer.test(dataloaders=...)) gets no beyond-accuracy metrics.
        self.active = getattr(getattr(trainer, "datamodule", None), "data", None) is not None
        if not self.active:
            return
        data = trainer.datamodule.data
        train, num_news = data.splits["train"], len(data.news["title"])
        clicks, listed = np.zeros(num_news, dtype=np.int64), np.zeros(num_news, dtype=bool)
        # A few million candidates at a time: MIND-large's splits hold ~90M each.
        for part in slices(len(train.candidates), 1 << 22):
            clicked = np.asarray(train.candidates[part])[np.asarray(train.labels[part]) == 1]
            clicks += np.bincount(clicked, minlength=num_news)
        self.information = self_information(clicks, len(train)).to(pl_module.device)
        tested = data.splits[trainer.datamodule.test_split].candidates
        for part in slices(len(tested), 1 << 22):
            listed[np.asarray(tested[part])] = True
        self.catalogue = int(listed[1:].sum())  # row 0 (news missing from news.tsv) is no news

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self.active or not isinstance(outputs, dict) or "scores" not in outputs:
            return  # no data to judge lists by, or a module that does not return its scores
        scores, candidates = outputs["scores"], batch["candidates"]
        rows, _ = top_k_candidates(scores, candidates, batch["candidate_mask"], self.k)
        with trainer.precision_plugin.forward_context():
            vectors = pl_module.scorer.list_vectors(batch, rows).float()
        category = pl_module.table["category"]
        self.metric.update(rows, batch["impression"], category, self.information, vectors)

    def _values(self) -> dict[str, float]:
        values = self.metric.compute(self.catalogue)  # a collective under DDP: every rank
        self.metric.reset()
        return {f"test/{name}": v for name, v in values.items()}

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        logged = {name: torch.tensor(v, dtype=torch.float32) for name, v in self._values().items()}
        pl_module.log_dict(logged, sync_dist=False)

    # An unlabeled test split (MIND-large, the synthetic worlds) is predicted, not tested: the
    # lists need no labels, so they are judged the same way; Lightning logs nothing in predict,
    # so the values wait in `results` for the runner (metrics.json).
    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.results = {}
        self.on_test_epoch_start(trainer, pl_module)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if isinstance(outputs, dict) and "scores" in outputs:
            outputs = {"scores": outputs["scores"].to(batch["candidates"].device)}
        self.on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            self.results = self._values()
