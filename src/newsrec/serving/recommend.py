"""What recommend.py does: top-k lists of a checkpoint for every impression of a split.

    python recommend.py ckpt_path=PATH [data=...] [k=10] [pool=impression|all] [split=dev]
                        [export=true]

Writes to the run folder:
- `recommendations.jsonl`: one line per impression, in behaviors.tsv order:
  {"impression_id": 3, "user": "U12", "news": ["N5", ...], "scores": [4.1, ...]}, best
  first. JSON Lines because a line is a whole impression that a person can read and any tool
  streams (`pandas.read_json(path, lines=True)`, `jq`, a serving system's loader), and a
  split's lists are a few MB at most; Parquet would be smaller and typed, but unreadable by
  eye and one more format to trust for so little data.
- `recommendations_metrics.json`: the lists' beyond-accuracy metrics (`newsrec.evaluation.beyond`).
- with export=true, the news and user vectors (`newsrec.serving.export`).

pool=impression ranks each impression's own candidates with eval.py's scores (same order);
pool=all ranks the whole news table minus the user's history (`newsrec.serving.ranking`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from newsrec.build import checkpoint_datamodule
from newsrec.checkpoints import load_module, read_checkpoint
from newsrec.cli import write_metrics
from newsrec.data.datamodule import EvalBatchSampler
from newsrec.data.mind import DataError, iter_behaviors
from newsrec.evaluation.beyond import BeyondAccuracy, self_information
from newsrec.evaluation.radio_callback import radio_for
from newsrec.evaluation.radio_metric import RadioMetric
from newsrec.evaluation.rerank import build_reranker, rerank_summary
from newsrec.models.module import NewsRecModule
from newsrec.serving.ranking import Ranker, news_ids, pool_all_problem
from newsrec.serving.reranked import rank_batch

log = logging.getLogger(__name__)
POOLS = ("impression", "all")


class RecommendError(DataError):
    """A setting of recommend.py that cannot work; the message says which and what to do.
    recommend.py prints it without a traceback and exits with status 2."""

    exit_status = 2


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_folder(paths, split: str) -> Path:
    """The MIND folder a split's impressions come from."""
    return Path({"train": paths.train, "dev": paths.dev, "test": paths.test}[split])


def user_ids(folder: Path) -> list[str]:
    """The MIND user id of every impression of a behaviors.tsv, in file order."""
    return [u for chunk in iter_behaviors(folder / "behaviors.tsv") for u in chunk.user.to_pylist()]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


def _check(cfg: DictConfig) -> tuple[Path, str, int]:
    path = Path(cfg.ckpt_path)
    pool, k = str(cfg.pool), int(cfg.k)
    if pool not in POOLS:
        raise RecommendError(f"pool={pool}: choose one of {', '.join(POOLS)}")
    if k < 1:
        raise RecommendError(f"k={k}: the lists need at least one news (k >= 1)")
    return path, pool, k


def _load_module(path: Path, device: torch.device, pool: str, checkpoint: dict) -> NewsRecModule:
    """The checkpoint's module (checked: newsrec.checkpoints), refused where it cannot rank
    the `pool`."""
    module = load_module(path, device, checkpoint=checkpoint).eval()
    if pool == "all" and (problem := pool_all_problem(module.recommender)) is not None:
        name = module.name
        raise RecommendError(
            f"pool=all cannot rank with {name}: {problem}, so each (user, news) pair would "
            "go through the network; use pool=impression"
        )
    return module


def recommend(cfg: DictConfig) -> dict:
    """Top-k lists (and optionally vectors) of `cfg.ckpt_path` on a split; returns the
    summary also written to recommendations_metrics.json."""
    path, pool, k = _check(cfg)
    device = _device(str(cfg.get("device", "auto")))
    checkpoint = read_checkpoint(path)  # checked before any data is prepared
    module = _load_module(path, device, pool, checkpoint)
    datamodule = checkpoint_datamodule(cfg, path, checkpoint)
    datamodule.prepare_data()
    datamodule.setup("test")
    split = str(cfg.get("split") or datamodule.test_split)
    if split not in datamodule.data.splits:
        splits = ", ".join(datamodule.data.splits)
        raise RecommendError(f"split={split}: this data has the splits {splits}")
    table = {name: t.to(device) for name, t in datamodule.news_table().items()}
    ids = np.asarray(news_ids(datamodule.paths), dtype=object)
    start = time.perf_counter()
    rows = None if pool == "all" else datamodule.eval_news(split).to(device)
    ranker = Ranker(module.recommender, table, rows)
    encode_s = time.perf_counter() - start
    dataset = datamodule.eval_dataset(split)
    arrays = datamodule.data.splits[split]
    metric, radio = BeyondAccuracy(k), radio_for(datamodule, table, k, cfg.get("radio"))
    reranker = build_reranker(cfg.get("rerank"))  # conf/rerank
    lists, scores = _rank_split(
        ranker, dataset, datamodule, split, pool, k, metric, radio, reranker
    )
    rank_s = time.perf_counter() - start - encode_s

    out = Path(cfg.paths.output_dir)
    users = user_ids(split_folder(datamodule.paths, split))
    target = write_jsonl(
        out / "recommendations.jsonl", arrays.impression_id, users, ids, lists, scores
    )
    catalogue = len(ids) - 1 if pool == "all" else len(np.setdiff1d(arrays.candidates, [0]))
    summary = {
        "checkpoint": str(path),
        "split": split,
        "pool": pool,
        "k": k,
        "impressions": int(len(arrays)),
        "recommendations": str(target),
        "encode_news_s": round(encode_s, 2),
        "rank_s": round(rank_s, 2),
        **_figures(metric, radio, catalogue),
        **rerank_summary(cfg),
    }
    if cfg.get("export"):
        from newsrec.serving.export import export_vectors

        summary["export"] = export_vectors(
            out, ranker, dataset, datamodule, ids, users, split, int(cfg.projector_news)
        )
    write_metrics(out / "recommendations_metrics.json", summary)
    print(
        f"top-{k} lists of {len(arrays):,} {split} impressions (pool={pool}) written to "
        f"{target} in {encode_s + rank_s:.1f} s",
        flush=True,
    )
    return summary


def _figures(metric: BeyondAccuracy, radio: RadioMetric, catalogue: int) -> dict:
    """The lists' beyond-accuracy and RADio metrics; NaN (e.g. no vectors to compare for NPA)
    is not JSON: null."""
    values = {**metric.compute(catalogue), **radio.compute()}
    return {n: None if math.isnan(v) else v for n, v in values.items()}


def _rank_split(
    ranker: Ranker,
    dataset,
    datamodule,
    split: str,
    pool: str,
    k: int,
    metric: BeyondAccuracy,
    radio: RadioMetric,
    reranker=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each impression's top-k (news rows [I, k], -1 where shorter; scores [I, k]) in the
    split's order, through `reranker` if any; the lists also go into `metric` and `radio`."""
    arrays = datamodule.data.splits[split]
    position = {int(i): p for p, i in enumerate(np.asarray(arrays.impression_id))}
    lists = np.full((len(arrays), k), -1, dtype=np.int64)
    scores = np.zeros((len(arrays), k), dtype=np.float32)
    done = np.zeros(len(arrays), dtype=bool)
    train = datamodule.data.splits["train"]
    clicks = np.bincount(
        np.asarray(train.candidates)[np.asarray(train.labels) == 1],
        minlength=len(ranker.table["title"]),
    )
    device = ranker.table["title"].device
    information = self_information(clicks, len(train)).to(device)
    everything = torch.arange(1, len(ranker.table["title"]), device=device)[None]  # pool=all
    with _progress() as progress:
        task = progress.add_task(f"top-{k} of {split} (pool={pool})", total=len(dataset))
        for positions in EvalBatchSampler(dataset.group_key, datamodule.eval_batch_size):
            batch = {n: t.to(device) for n, t in dataset.__getitems__(positions).items()}
            top, top_scores, ranked = rank_batch(ranker, reranker, batch, pool, k)
            history = batch["history"] * batch["history_mask"]
            pool_rows = ranked["candidates"] if pool == "impression" else everything
            radio.update(top, batch["impression"], history[batch["owner"]], pool_rows)
            vectors = ranker.list_vectors(batch, top)
            metric.update(top, batch["impression"], ranker.table["category"], information, vectors)
            at = np.asarray([position[int(i)] for i in batch["impression"].tolist()])
            lists[at, : top.shape[1]] = top.cpu().numpy()
            scores[at, : top.shape[1]] = top_scores.float().cpu().numpy()
            done[at] = True
            progress.advance(task, len(positions))
    if not done.all():
        raise RuntimeError(f"{int((~done).sum())} impressions of {split} received no list")
    return lists, scores


def write_jsonl(
    path: Path,
    impression_id: np.ndarray,
    users: list[str],
    ids: np.ndarray,
    lists: np.ndarray,
    scores: np.ndarray,
) -> Path:
    """recommendations.jsonl, one impression a line, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, (impression, row, row_scores) in enumerate(
            zip(np.asarray(impression_id), lists, scores, strict=True)
        ):
            keep = row >= 0
            line = {
                "impression_id": int(impression),
                "user": users[i],
                "news": ids[row[keep]].tolist(),
                "scores": [float(f"{s:.7g}") for s in row_scores[keep]],  # float32 holds ~7 digits
            }
            f.write(json.dumps(line) + "\n")
    os.replace(tmp, path)
    return path
