"""RADio's metrics of lists given by MIND ids, for the Python API (`NewsRecommender.list_metrics`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from newsrec.evaluation.news_features import load_or_compute
from newsrec.evaluation.radio_metric import NewsTables, RadioMetric, settings_from


def default_cache_dir(data_dir: str | Path | None = None) -> Path:
    """Where the API caches per-news features: <data_dir or NEWSREC_DATA_DIR or data>/cache."""
    return Path(data_dir or os.environ.get("NEWSREC_DATA_DIR", "data")) / "cache"


def _padded(rows: list[list[int]], fill: int, left: bool = False) -> torch.Tensor:
    """Rows as a [len(rows), longest] tensor, `fill` where shorter (left padding: histories)."""
    width = max([1, *(len(r) for r in rows)])
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if r and left:
            out[i, width - len(r) :] = torch.tensor(r)
        elif r:
            out[i, : len(r)] = torch.tensor(r)
    return out


def list_metrics(
    rec,
    histories: Sequence[Sequence[str]],
    lists: Sequence[Sequence[str]],
    pools: Sequence[Sequence[str]] | None,
    k: int | None,
    options: dict,
) -> dict[str, float]:
    """See `NewsRecommender.list_metrics`."""
    if len(histories) != len(lists) or (pools is not None and len(pools) != len(lists)):
        raise ValueError("list_metrics wants one history (and one pool, if any) per list")
    if rec.sources is None:
        raise ValueError("this recommender has no news files to compute RADio's features from")

    def rows(ids: Sequence[str]) -> list[int]:
        return [rec.row[n] for n in ids if n in rec.row]

    listed = [rows(items) for items in lists]
    k = k or max([1, *(len(r) for r in listed)])
    device = rec.device
    top = _padded([r[:k] for r in listed], -1).to(device)
    history = _padded([rows(h)[-rec.history_len :] for h in histories], 0, left=True).to(device)
    if pools is None:  # the whole news table but the padding row
        pool = torch.arange(1, len(rec.table["title"]), device=device)[None]
    else:
        pool = _padded([rows(p) for p in pools], 0).to(device)
    settings, rest = settings_from(options)
    metric = RadioMetric(k, settings, **rest)
    metric.set_tables(NewsTables.build(rec.table, load_or_compute(*rec.sources, progress=False)))
    metric.update(top, torch.arange(len(listed), device=device), history, pool)
    return metric.compute()
