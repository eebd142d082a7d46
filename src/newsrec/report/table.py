"""A sweep's runs as the paper's comparison table: rows of mean ± std over seeds, as CSV and Markdown.

Every finished run writes `metrics.json` in its folder (`newsrec.train`). This module
collects them, groups the runs by data set and model (models in the NRMS / MIND papers'
order), and writes into the sweep folder:

- `comparison.csv`  one row per model: mean and sample std over seeds of each test metric,
                    parameters without embeddings, mean training time; plus an `oracle` row
                    on a synthetic world (ranking by the true click probability);
- `comparison.md`   the same as a Markdown table, `mean ± std`, best model per column in bold;
- `comparison.png`  a grouped bar chart, std error bars, the oracle as dashed lines.

Hydra calls `build_report` at the end of every multirun (`newsrec.report.ComparisonReport`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from newsrec.constants import METRICS

log = logging.getLogger(__name__)

LABELS = {"auc": "AUC", "mrr": "MRR", "ndcg@5": "nDCG@5", "ndcg@10": "nDCG@10"}

# Baselines in the order of the NRMS paper's Table 2 and the MIND paper's Table 3, then NRMS,
# then its ablations in the order of the NRMS paper's Figure 3; anything else follows,
# alphabetically.
MODEL_ORDER = (
    "libfm",
    "dssm",
    "wide_deep",
    "deepfm",
    "dfm",
    "dkn",
    "conv3d",
    "npa",
    "naml",
    "lstur",
    "lstur_ini",
    "lstur_con",
    "gru",
    "nrms",
    "nrms_no_attention",
    "nrms_news_only",
    "nrms_word_only",
    "nrms_additive_only",
    "nrms_self_only",
    "nrms_cnn",
)
ORACLE = "oracle"

CSV_NAME, MARKDOWN_NAME, CHART_NAME = "comparison.csv", "comparison.md", "comparison.png"


@dataclass
class Row:
    """One line of the table: a model's runs on one data set, or the oracle's."""

    model: str
    data: str
    inputs: list[str]
    seeds: list[int]
    mean: dict[str, float]  # metric -> mean over runs; NaN when no run has it
    std: dict[str, float]  # metric -> sample std (ddof=1); NaN with fewer than 2 values
    params_without_embeddings: int | None = None
    train_time_s_mean: float = math.nan
    paths: list[Path] = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def model_sort_key(name: str) -> tuple[int, str]:
    """Paper order first, unknown names after it, alphabetically."""
    if name in MODEL_ORDER:
        return MODEL_ORDER.index(name), ""
    return len(MODEL_ORDER), name


def find_runs(sweep_dir: Path) -> list[dict]:
    """Every training run's metrics.json under `sweep_dir` (any depth), with its path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such folder (give the sweep's folder)")
    files = sorted(sweep_dir.rglob("metrics.json"))
    runs = []
    for path in files:
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("%s: unreadable, left out of the report (%s)", path, err)
            continue
        if not isinstance(run, dict) or "model" not in run:
            log.warning("%s: no 'model' key (not a training run?), left out", path)
            continue
        run["_path"] = path
        runs.append(run)
    if not runs:
        found = f"{len(files)} metrics.json, none usable" if files else "no metrics.json"
        raise FileNotFoundError(
            f"{sweep_dir}: {found}. Each training run writes metrics.json in its folder "
            "when it finishes; give the folder of a sweep whose runs finished "
            "(e.g. multirun/train/<date>_<time>)."
        )
    return runs


def _value(run: dict, key: str) -> float:
    value = run.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    present = [v for v in values if not math.isnan(v)]
    if not present:
        return math.nan, math.nan
    mean = statistics.fmean(present)
    return mean, statistics.stdev(present) if len(present) >= 2 else math.nan


def _seed(run: dict) -> int:
    seed = run.get("seed")
    return int(seed) if isinstance(seed, (int, float)) else -1


def summarize(runs: list[dict]) -> list[Row]:
    """Rows grouped by (data, model), in paper order; each data set's oracle row after it."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((str(run.get("data", "")), str(run["model"])), []).append(run)
    rows = []
    for data in sorted({d for d, _ in groups}):
        models = sorted((m for d, m in groups if d == data), key=model_sort_key)
        for model in models:
            rows.append(_model_row(data, model, groups[data, model]))
        oracle = _oracle_row(data, [r for (d, _), rs in groups.items() if d == data for r in rs])
        if oracle is not None:
            rows.append(oracle)
    return rows


def _model_row(data: str, model: str, runs: list[dict]) -> Row:
    runs = sorted(runs, key=_seed)
    seeds = [_seed(r) for r in runs]
    if len(set(seeds)) < len(seeds):
        log.warning("%s on %s: repeated seeds %s (each run counted)", model, data, seeds)
    stats = {m: _mean_std(_value(r, f"test/{m}") for r in runs) for m in METRICS}
    params = {r["params_without_embeddings"] for r in runs if "params_without_embeddings" in r}
    if len(params) > 1:
        log.warning("%s on %s: parameter counts differ across runs: %s", model, data, params)
    inputs = runs[0].get("inputs") or []
    return Row(
        model=model,
        data=data,
        inputs=[str(i) for i in inputs],
        seeds=seeds,
        mean={m: s[0] for m, s in stats.items()},
        std={m: s[1] for m, s in stats.items()},
        params_without_embeddings=int(max(params)) if params else None,
        train_time_s_mean=_mean_std(_value(r, "train_time_s") for r in runs)[0],
        paths=[r["_path"] for r in runs],
    )


def _oracle_row(data: str, runs: list[dict]) -> Row | None:
    """Mean of the runs' oracle figures: the same world for every run, so they should agree."""
    runs = [r for r in runs if f"test/oracle_{METRICS[0]}" in r]
    if not runs:
        return None
    stats = {m: _mean_std(_value(r, f"test/oracle_{m}") for r in runs) for m in METRICS}
    spread = max((s[1] for s in stats.values() if not math.isnan(s[1])), default=0.0)
    if spread > 1e-6:
        log.warning("%s: the oracle figures differ across runs (std %.2g)", data, spread)
    return Row(
        model=ORACLE,
        data=data,
        inputs=["true click probability"],
        seeds=sorted(_seed(r) for r in runs),
        mean={m: s[0] for m, s in stats.items()},
        std={m: s[1] for m, s in stats.items()},
        paths=[r["_path"] for r in runs],
    )


# ---------------------------------------------------------------------------------------------
# Writers


def _csv_number(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value)


def render_csv(rows: list[Row]) -> str:
    columns = ["model", "inputs", "n_seeds"]
    columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    columns += ["params_without_embeddings", "train_time_s_mean", "data", "seeds"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        line = [row.model, " ".join(row.inputs), row.n_seeds]
        for m in METRICS:
            line += [_csv_number(row.mean[m]), _csv_number(row.std[m])]
        line += [
            _csv_number(row.params_without_embeddings),
            _csv_number(row.train_time_s_mean),
            row.data,
            " ".join(str(s) for s in row.seeds),
        ]
        writer.writerow(line)
    return out.getvalue()


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _metric_cell(row: Row, metric: str, best: float) -> str:
    mean, std = row.mean[metric], row.std[metric]
    if math.isnan(mean):
        return "–"
    text = f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"
    # Compared at the shown precision, so values that read the same are bold together.
    return f"**{text}**" if row.model != ORACLE and round(mean, 4) == best else text


def render_markdown(rows: list[Row], sweep_dir: Path) -> str:
    lines = ["# Model comparison", ""]
    for data in sorted({r.data for r in rows}):
        lines += _markdown_section(data, [r for r in rows if r.data == data])
    lines += [
        "Mean ± sample standard deviation (ddof = 1) over seeds on the test split; a model "
        "with a single run shows its mean only. **Bold**: the best model in each column (the "
        "oracle excluded). Params: trainable parameters without the embedding tables (words, "
        "entities, categories, users), as the NRMS paper's Table 3 counts them. Train time: "
        "mean wall-clock time of fitting per run.",
        "",
        f"Sweep: `{sweep_dir}`. Per-run curves and hyper-parameters against final metrics: "
        f"`tensorboard --logdir {sweep_dir}` (HPARAMS tab).",
        "",
    ]
    return "\n".join(lines)


def _markdown_section(data: str, rows: list[Row]) -> list[str]:
    models = [r for r in rows if r.model != ORACLE]
    oracle = next((r for r in rows if r.model == ORACLE), None)
    n_runs = sum(r.n_seeds for r in models)
    seeds = sorted({s for r in models for s in r.seeds})
    lines = [
        f"## Data: {data or 'unknown'} ({n_runs} runs of {len(models)} models, "
        f"seeds {', '.join(str(s) for s in seeds)})",
        "",
        "| Model | Inputs | "
        + " | ".join(LABELS[m] for m in METRICS)
        + " | Params (no emb.) | Train time | Seeds |",
        "|---|---|" + "---:|" * len(METRICS) + "---:|---:|---:|",
    ]
    best = {}
    for m in METRICS:
        present = [r.mean[m] for r in models if not math.isnan(r.mean[m])]
        best[m] = round(max(present), 4) if present else math.nan
    for row in models:
        params = (
            f"{row.params_without_embeddings:,}"
            if row.params_without_embeddings is not None
            else "–"
        )
        cells = [row.model, ", ".join(row.inputs) or "–"]
        cells += [_metric_cell(row, m, best[m]) for m in METRICS]
        cells += [params, _duration(row.train_time_s_mean), str(row.n_seeds)]
        lines.append("| " + " | ".join(cells) + " |")
    if oracle is not None:
        cells = ["*oracle (bound)*", "true click probability"]
        cells += [_metric_cell(oracle, m, best[m]) for m in METRICS]
        cells += ["–", "–", f"({oracle.n_seeds} runs)"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if oracle is not None:
        lines += [
            "Oracle: candidates ranked by the synthetic world's true click probability, the "
            "bound any model can reach on this data (mean of the runs' oracle figures).",
            "",
        ]
    return lines
