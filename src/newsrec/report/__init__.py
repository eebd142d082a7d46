"""Turn a sweep of runs into the paper's comparison table: `python -m newsrec.report SWEEP_DIR`.

Every finished run writes `metrics.json` in its folder (`newsrec.train`). `table.py` collects
them and groups the runs by data set and model (models in the NRMS / MIND papers' order);
`build_report` writes into the sweep folder:

- `comparison.csv`  one row per model: mean and sample std over seeds of each test metric,
                    parameters without embeddings, mean training time; plus an `oracle` row
                    on a synthetic world (ranking by the true click probability);
- `comparison.md`   the same as a Markdown table, `mean ± std`, best model per column in bold;
- `comparison.png`  a grouped bar chart, std error bars, the oracle as dashed lines (`chart.py`).

Hydra calls `build_report` at the end of every multirun (`ComparisonReport`, `callback.py`).
"""

from __future__ import annotations

from newsrec.report.build import build_report
from newsrec.report.callback import ComparisonReport
from newsrec.report.table import CHART_NAME, CSV_NAME, MARKDOWN_NAME, ORACLE, model_sort_key

__all__ = [
    "CHART_NAME",
    "CSV_NAME",
    "MARKDOWN_NAME",
    "ORACLE",
    "ComparisonReport",
    "build_report",
    "model_sort_key",
]
