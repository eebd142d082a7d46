"""RADio's metrics (`newsrec.evaluation.radio`) over an evaluation's top-k lists, exact under DDP.

`RadioMetric.update` takes a batch of lists with each impression's history and candidate
pool and computes the per-list values where the data is; `compute` gathers them by global
impression id, keeps one entry per impression (as `BeyondAccuracy` does) and averages. The
one metric between lists, fragmentation, compares `pairs` pairs of distinct lists drawn with
a fixed seed from the lists ordered by impression id, so 1 and 2 processes draw the same
pairs; `fragmentation_pairs@k` says how many were compared.

Keys: `calibration_category@k`, `calibration_subcategory@k`, `calibration_complexity@k`,
`fragmentation@k`, `activation@k`, `representation@k`, `alternative_voices@k`. A metric
whose per-news feature is missing (textstat or vaderSentiment not installed) is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from newsrec.evaluation import radio
from newsrec.evaluation.news_features import NewsFeatures
from newsrec.evaluation.radio import RadioSettings

PER_LIST = (
    "calibration_category",
    "calibration_subcategory",
    "calibration_complexity",
    "activation",
    "representation",
    "alternative_voices",
)
NAMES = (*PER_LIST[:3], "fragmentation", *PER_LIST[3:])
FRAGMENTATION_BY = ("subcategory", "category")


@dataclass
class NewsTables:
    """What the metrics read of each news row, as tensors [N] / [N, X] on one device."""

    category: Tensor
    subcategory: Tensor
    complexity: Tensor
    sentiment: Tensor
    entity_types: Tensor
    voices: Tensor

    @classmethod
    def build(cls, table: dict[str, Tensor], features: NewsFeatures) -> NewsTables:
        """From the news table (category, subcategory) and its `NewsFeatures`."""
        if len(features) != len(table["category"]):
            raise ValueError(
                f"news features hold {len(features)} rows but the news table has "
                f"{len(table['category'])}: the news files changed since preprocessing"
            )
        device = table["category"].device
        arrays = {n: getattr(features, n) for n in ("complexity", "sentiment", "entity_types")}
        arrays["voices"] = features.voices
        return cls(
            category=table["category"].long(),
            subcategory=table["subcategory"].long(),
            **{n: torch.from_numpy(np.asarray(a)).to(device) for n, a in arrays.items()},
        )

    def available(self) -> set[str]:
        """The metric names these features can compute."""
        names = set(NAMES)
        if bool(self.complexity.isnan().all()):
            names.discard("calibration_complexity")
        if bool(self.sentiment.isnan().all()):
            names.discard("activation")
        return names


class RadioMetric(Metric):
    """RADio's metrics of an epoch's top-k lists (see the module doc)."""

    full_state_update = False

    def __init__(
        self,
        k: int = 10,
        settings: RadioSettings | None = None,
        fragmentation_by: str = "subcategory",
        pairs: int = 100_000,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fragmentation_by not in FRAGMENTATION_BY:
            raise ValueError(
                f"RADio fragmentation_by={fragmentation_by!r}: choose one of "
                f"{', '.join(FRAGMENTATION_BY)}"
            )
        self.k, self.settings = k, settings or RadioSettings()
        self.fragmentation_by, self.pairs, self.seed = fragmentation_by, pairs, seed
        self.tables: NewsTables | None = None
        for name in ("impressions", "story", *PER_LIST):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def set_tables(self, tables: NewsTables) -> None:
        self.tables = tables
        self.shares = {  # q(x | i) of every news: one embedding_bag per list and pool
            "representation": radio.share_table(tables.entity_types),
            "alternative_voices": radio.share_table(tables.voices),
        }

    @torch.no_grad()
    def update(
        self,
        lists: Tensor,
        impression: Tensor,
        history: Tensor,
        pool: Tensor,
        pool_mask: Tensor | None = None,
    ) -> None:
        """Add top-k lists [B, k'] (news rows best first, -1 where empty; k' <= k).

        impression: [B] global ids; history: [B, H] each list's clicked news rows, most
        recent last, 0 = padding (an evaluation batch's `history[owner]`); pool: [B, C] (or
        [1, C], one pool for all) the candidate rows a list was chosen from, with pool_mask.
        """
        t = self.tables
        lists = F.pad(lists, (0, self.k - lists.shape[1]), value=-1)
        valid, rows = lists >= 0, lists.clamp(min=0)
        history = history.flip(1)  # most recent first: rank 1 of the history's discount
        seen, past = history > 0, history
        pool_mask = pool > 0 if pool_mask is None else pool_mask & (pool > 0)
        s = self.settings
        values = {
            "calibration_category": radio.calibration(
                t.category[rows], valid, t.category[past], seen, s
            ),
            "calibration_subcategory": radio.calibration(
                t.subcategory[rows], valid, t.subcategory[past], seen, s
            ),
            "calibration_complexity": radio.calibration_complexity(
                t.complexity[rows], valid, t.complexity[past], seen, s
            ),
            "activation": radio.activation(
                t.sentiment[rows], valid, t.sentiment[pool], pool_mask, s
            ),
            "representation": radio.pool_divergence(
                rows, valid, pool, pool_mask, self.shares["representation"], s
            ),
            "alternative_voices": radio.pool_divergence(
                rows, valid, pool, pool_mask, self.shares["alternative_voices"], s
            ),
        }
        for name, value in values.items():
            getattr(self, name).append(value.float())
        story = getattr(t, self.fragmentation_by)[rows].masked_fill(~valid, -1)
        self.story.append(story.int())
        self.impressions.append(impression.long())

    def compute(self) -> dict[str, float]:
        """`name@k` -> mean over lists (NaN values left out), and `fragmentation_pairs@k`."""
        names = [n for n in NAMES if self.tables is None or n in self.tables.available()]
        result = {f"{n}@{self.k}": math.nan for n in names}
        result[f"fragmentation_pairs@{self.k}"] = 0.0
        result[f"radio_lists@{self.k}"] = 0.0
        if isinstance(self.impressions, list) and not self.impressions:
            return result
        impressions = dim_zero_cat(self.impressions).cpu()
        _, order = torch.sort(impressions, stable=True)
        first = torch.ones(len(order), dtype=torch.bool)
        first[1:] = impressions[order][1:] != impressions[order][:-1]
        keep = order[first]  # one entry per impression, in impression id order
        result[f"radio_lists@{self.k}"] = float(len(keep))
        for name in PER_LIST:
            if f"{name}@{self.k}" in result:
                values = dim_zero_cat(getattr(self, name)).cpu()[keep]
                values = values[~values.isnan()].double()
                result[f"{name}@{self.k}"] = float(values.mean()) if len(values) else math.nan
        stories = dim_zero_cat(self.story).cpu()[keep]
        value, pairs = self._fragmentation(stories[(stories >= 0).any(1)])
        result[f"fragmentation@{self.k}"] = value
        result[f"fragmentation_pairs@{self.k}"] = float(pairs)
        return result

    def _fragmentation(self, stories: Tensor, chunk: int = 1 << 15) -> tuple[float, int]:
        """Mean divergence of `pairs` random pairs of distinct lists [n, k] (seeded)."""
        n = len(stories)
        if n < 2:
            return math.nan, 0
        count = int(min(self.pairs, n * (n - 1) // 2))
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, n, count)
        b = rng.integers(0, n - 1, count)
        b += b >= a  # a list is never paired with itself
        total, defined = 0.0, 0
        for start in range(0, count, chunk):
            x, y = stories[a[start : start + chunk]], stories[b[start : start + chunk]]
            value = radio.fragmentation(x, x >= 0, y, y >= 0, self.settings)
            total += float(value.nansum())
            defined += int((~value.isnan()).sum())
        return (total / defined if defined else math.nan), count


def settings_from(options: dict) -> tuple[RadioSettings, dict]:
    """(RadioSettings, the remaining options) of a flat config dict."""
    names = {f.name for f in fields(RadioSettings)}
    chosen = {k: v for k, v in options.items() if k in names}
    return RadioSettings(**chosen), {k: v for k, v in options.items() if k not in names}
