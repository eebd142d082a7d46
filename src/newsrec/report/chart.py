"""The comparison chart: grouped bars per model, std error bars, the oracle as dashed lines."""

from __future__ import annotations

import math
from pathlib import Path

from newsrec.constants import METRICS
from newsrec.report.table import LABELS, ORACLE, Row
from newsrec.utils.io import atomic_path


def render_chart(rows: list[Row], path: Path) -> None:
    """Grouped bars (one group per model, one bar per metric), std error bars, and each
    metric's oracle as a dashed line in the metric's colour; one panel per data set."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas

    datasets = sorted({r.data for r in rows})
    most = max(sum(r.model != ORACLE for r in rows if r.data == d) for d in datasets)
    width = max(7.0, 1.5 + 1.1 * most)
    fig = Figure(figsize=(width, 4.2 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), 1, squeeze=False)[:, 0]
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    bar = 0.8 / len(METRICS)
    for ax, data in zip(axes, datasets, strict=True):
        models = [r for r in rows if r.data == data and r.model != ORACLE]
        oracle = next((r for r in rows if r.data == data and r.model == ORACLE), None)
        top = 0.0
        for k, (metric, colour) in enumerate(zip(METRICS, colours, strict=True)):
            xs = [i + (k - (len(METRICS) - 1) / 2) * bar for i in range(len(models))]
            means = [0.0 if math.isnan(r.mean[metric]) else r.mean[metric] for r in models]
            errs = [r.std[metric] for r in models]  # NaN (one run): no error bar drawn
            ax.bar(xs, means, bar, yerr=errs, capsize=3, color=colour, label=LABELS[metric])
            top = max(
                [top, *(m + (0 if math.isnan(e) else e) for m, e in zip(means, errs, strict=True))]
            )
            if oracle is not None and not math.isnan(oracle.mean[metric]):
                value = oracle.mean[metric]
                ax.axhline(value, color=colour, linestyle="--", linewidth=1.2)
                ax.annotate(
                    f"oracle {LABELS[metric]}",
                    (1.0, value),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
                top = max(top, value)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(
            [f"{r.model}\n(n={r.n_seeds})" for r in models],
            rotation=20 if len(models) > 6 else 0,
        )
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, min(1.0, top * 1.08) if top > 0 else 1.0)
        ax.set_ylabel("test metric")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        bound = " (dashed: oracle bound)" if oracle is not None else ""
        ax.set_title(f"{data or 'unknown data'}: mean ± std over seeds{bound}")
        ax.legend(ncols=len(METRICS), loc="upper left", fontsize=9, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
