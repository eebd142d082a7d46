"""The accuracy-diversity trade-off of re-rankers: a sweep of eval.py runs -> table and plot.

    python eval.py -m ckpt_path=CKPT rerank=mmr,calibration,xquad rerank.weight=0,0.1,0.2,0.4,0.8

Each eval.py run writes metrics.json with its `rerank` and `rerank_weight`; at the end of the
sweep (`TradeoffReport`, a Hydra callback of conf/eval.yaml) or by hand with
`python -m newsrec.report.tradeoff SWEEP_DIR`, this writes into the sweep folder:

- `tradeoff.csv` / `tradeoff.md`: one row per (re-ranker, weight): nDCG@10, AUC and every
  diversity metric (intra-list diversity, RADio's metrics, coverage, novelty);
- `tradeoff.png`: nDCG@10 against each diversity metric, one line per re-ranker through its
  weights (labelled), as the comparison report (`newsrec.report`) does for models.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from newsrec.utils.io import atomic_path, write_text

log = logging.getLogger(__name__)

ACCURACY = ("test/ndcg@10", "test/auc")
DIVERSITY = (  # (metrics.json key, label, whether higher is more diverse)
    ("test/diversity_category@10", "ILD, categories", True),
    ("test/diversity_vector@10", "ILD, news vectors", True),
    ("test/calibration_category@10", "RADio calibration (category)", False),
    ("test/calibration_subcategory@10", "RADio calibration (subcategory)", False),
    ("test/calibration_complexity@10", "RADio calibration (complexity)", False),
    ("test/fragmentation@10", "RADio fragmentation", True),
    ("test/activation@10", "RADio activation", True),
    ("test/representation@10", "RADio representation", True),
    ("test/alternative_voices@10", "RADio alternative voices", True),
    ("test/coverage@10", "coverage", True),
    ("test/novelty@10", "novelty (bits)", True),
)
CSV_NAME, MARKDOWN_NAME, CHART_NAME = "tradeoff.csv", "tradeoff.md", "tradeoff.png"


def find_reranked_runs(sweep_dir: Path) -> list[dict]:
    """Every eval.py run's metrics.json under `sweep_dir` that names its re-ranker."""
    runs = []
    for path in sorted(Path(sweep_dir).rglob("metrics.json")):
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and "rerank" in run and "test/ndcg@10" in run:
            runs.append(run)
    if not runs:
        raise FileNotFoundError(
            f"{sweep_dir}: no eval.py run with a re-ranker (metrics.json with 'rerank'); run "
            "python eval.py -m ckpt_path=... rerank=mmr,calibration rerank.weight=0,0.2,0.4"
        )
    return sorted(runs, key=lambda r: (r["rerank"], float(r["rerank_weight"])))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def render_csv(runs: list[dict]) -> str:
    keys = [*ACCURACY, *(k for k, _, _ in DIVERSITY)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rerank", "weight", *(k.removeprefix("test/") for k in keys), "checkpoint"])
    for run in runs:
        values = ["" if math.isnan(v) else repr(v) for v in (_number(run.get(k)) for k in keys)]
        writer.writerow([run["rerank"], run["rerank_weight"], *values, run.get("checkpoint", "")])
    return out.getvalue()


def render_markdown(runs: list[dict], sweep_dir: Path) -> str:
    present = [(k, label) for k, label, _ in DIVERSITY if any(k in r for r in runs)]
    lines = [
        "# Re-rankers: accuracy against diversity",
        "",
        "| Re-ranker | Weight | nDCG@10 | AUC | "
        + " | ".join(label for _, label in present)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(present),
    ]
    for run in runs:
        cells = [run["rerank"], f"{float(run['rerank_weight']):g}"]
        for key in (*ACCURACY, *(k for k, _ in present)):
            value = _number(run.get(key))
            cells.append("–" if math.isnan(value) else f"{value:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    checkpoints = sorted({str(r.get("checkpoint", "")) for r in runs})
    lines += [
        "",
        "Test split of each eval.py run; re-rankers fill the first `rerank.depth` positions "
        "greedily (newsrec.evaluation.rerank). ILD: intra-list diversity (higher: more "
        "diverse); RADio's calibration: divergence from the user's history (lower: closer); "
        "RADio's other metrics: divergence from the pool or between users' lists.",
        "",
        f"Checkpoint(s): {', '.join(f'`{c}`' for c in checkpoints)}. Sweep: `{sweep_dir}`.",
        "",
    ]
    return "\n".join(lines)


def render_chart(runs: list[dict], path: Path) -> None:
    """nDCG@10 (y) against each diversity metric (x), a line per re-ranker through its
    weights, each point labelled with its weight."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    present = [(k, label) for k, label, _ in DIVERSITY if any(k in r for r in runs)]
    columns = 3
    rows = max(1, -(-len(present) // columns))
    fig = Figure(figsize=(4.3 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    names = sorted({r["rerank"] for r in runs})
    for ax, (key, label) in zip(axes, present, strict=False):
        for name in names:
            points = [r for r in runs if r["rerank"] == name]
            xs = [_number(r.get(key)) for r in points]
            ys = [_number(r.get("test/ndcg@10")) for r in points]
            ax.plot(xs, ys, marker="o", label=name)
            for r, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(f"{float(r['rerank_weight']):g}", (x, y), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel(label)
        ax.set_ylabel("nDCG@10")
        ax.grid(alpha=0.3)
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, title="re-ranker (weight)", title_fontsize=8)
    fig.suptitle("Re-rankers: nDCG@10 against each diversity metric (labels: rerank.weight)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def build_tradeoff(sweep_dir: Path) -> Path:
    """tradeoff.csv, tradeoff.md and tradeoff.png in `sweep_dir`; returns tradeoff.md."""
    sweep_dir = Path(sweep_dir)
    runs = find_reranked_runs(sweep_dir)
    write_text(sweep_dir / CSV_NAME, render_csv(runs))
    write_text(sweep_dir / MARKDOWN_NAME, render_markdown(runs, sweep_dir))
    render_chart(runs, sweep_dir / CHART_NAME)
    return sweep_dir / MARKDOWN_NAME


class TradeoffReport(Callback):
    """After an eval.py multirun: `build_tradeoff(hydra.sweep.dir)`; a failure is logged,
    never raised (the runs' metrics.json are already written)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = getattr(self, "sweep_dir", None) or Path(str(config.hydra.sweep.dir))
        try:
            markdown = build_tradeoff(sweep_dir)
        except FileNotFoundError as err:
            log.info("no trade-off report: %s", err)
            return
        except Exception:
            log.exception(
                "trade-off report FAILED; rebuild: python -m newsrec.report.tradeoff %s", sweep_dir
            )
            return
        log.info("trade-off report written: %s (and %s, %s)", markdown, CSV_NAME, CHART_NAME)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m newsrec.report.tradeoff SWEEP_DIR")
    try:
        print(build_tradeoff(Path(sys.argv[1])).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
