"""`build_report`: a sweep folder's runs -> comparison.csv, comparison.md, comparison.png."""

from __future__ import annotations

from pathlib import Path

from newsrec.report.chart import render_chart
from newsrec.report.slices import SLICES_CSV, render_slice_csv, render_slice_markdown
from newsrec.report.table import (
    CHART_NAME,
    CSV_NAME,
    MARKDOWN_NAME,
    find_runs,
    render_csv,
    render_markdown,
    summarize,
)
from newsrec.utils.io import write_text


def build_report(sweep_dir: Path) -> Path:
    """Write comparison.csv, comparison.md and comparison.png into `sweep_dir`.

    Returns the path of comparison.md. Raises FileNotFoundError if no run's metrics.json
    is found under `sweep_dir`.
    """
    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir)
    rows = summarize(runs)
    write_text(sweep_dir / CSV_NAME, render_csv(rows))
    markdown = sweep_dir / MARKDOWN_NAME
    by_slice = render_slice_markdown(runs)  # results by slice, when the runs report them
    write_text(markdown, render_markdown(rows, sweep_dir) + by_slice)
    if by_slice:
        write_text(sweep_dir / SLICES_CSV, render_slice_csv(runs))
    render_chart(rows, sweep_dir / CHART_NAME)
    return markdown
