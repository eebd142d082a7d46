"""Results by slice in the comparison report: a model's test AUC and nDCG@10 per slice of
impressions (`test/slice/<slice>/...` in metrics.json, `newsrec.evaluation.slices`), the
mean over its seeds, with each slice's impression count.

Written into `comparison.md` (a section after the main table) and `comparison_slices.csv`.
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from newsrec.report.table import model_sort_key

SLICES_CSV = "comparison_slices.csv"
PREFIX = "test/slice/"


def slice_names(runs: list[dict]) -> list[str]:
    """The slices the runs report, in the order the first run lists them."""
    names: dict[str, None] = {}
    for run in runs:
        for key in run:
            if key.startswith(PREFIX) and key.endswith("/auc"):
                names[key[len(PREFIX) : -len("/auc")]] = None
    return list(names)


def _mean(runs: list[dict], key: str) -> float:
    values = [float(r[key]) for r in runs if isinstance(r.get(key), (int, float))]
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def _groups(runs: list[dict]) -> list[tuple[str, str, list[dict]]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((str(run.get("data", "")), str(run["model"])), []).append(run)
    order = sorted(groups, key=lambda g: (g[0], model_sort_key(g[1])))
    return [(data, model, groups[data, model]) for data, model in order]


def render_slice_csv(runs: list[dict]) -> str:
    names = slice_names(runs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["data", "model", "n_seeds", "slice", "auc", "ndcg@10", "impressions"])
    for data, model, group in _groups(runs):
        for name in names:
            values = [
                _mean(group, f"{PREFIX}{name}/{m}") for m in ("auc", "ndcg@10", "impressions")
            ]
            writer.writerow(
                [data, model, len(group), name, *("" if math.isnan(v) else repr(v) for v in values)]
            )
    return out.getvalue()


def render_slice_markdown(runs: list[dict]) -> str:
    """The section of comparison.md; empty when no run reports slices."""
    names = slice_names(runs)
    if not names:
        return ""
    lines = [
        "## Results by slice (test AUC / nDCG@10, mean over seeds)",
        "",
        "| Data | Model | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    first_counts = {}
    for data, model, group in _groups(runs):
        cells = []
        for name in names:
            auc, ndcg = (_mean(group, f"{PREFIX}{name}/{m}") for m in ("auc", "ndcg@10"))
            first_counts.setdefault(name, _mean(group, f"{PREFIX}{name}/impressions"))
            cells.append("–" if math.isnan(auc) and math.isnan(ndcg) else f"{auc:.4f} / {ndcg:.4f}")
        lines.append(f"| {data or '–'} | {model} | " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"{n} {first_counts[n]:,.0f}" for n in names if not math.isnan(first_counts[n])
    )
    lines += [
        "",
        "Slices: the user's history length (history_0 ... history_50+), users new to or seen "
        "in training, and each impression's candidates cut to news fresh (never in the "
        "training split) or seen there (`newsrec.evaluation.slices`). Impressions with a "
        f"click per slice (first model): {counts}. As CSV: "
        f"`{SLICES_CSV}`.",
        "",
    ]
    return "\n".join(lines)
