"""Hydra callbacks (conf/hydra/default.yaml, `hydra.callbacks`); Lightning's live in conf/callbacks.

`ComparisonReport` writes the comparison table of a multirun into its sweep folder once
every job has finished: `python train.py -m model=nrms,npa seed=1,2,3` ends with
`comparison.md`, `comparison.csv` and `comparison.png` beside the job folders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ComparisonReport(Callback):
    """After a multirun, `newsrec.report.build_report(hydra.sweep.dir)`.

    The runs' results are already safe in their metrics.json when this runs, so a report that
    fails is logged as an error, with the command that rebuilds it, and does not raise.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolved now, once: hydra.sweep.dir usually holds ${now:...}.
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        try:
            from newsrec.report.build import build_report

            markdown = build_report(sweep_dir)
        except FileNotFoundError as err:  # no finished run: the message says it all
            log.error("comparison report NOT written: %s", err)
            return
        except Exception:
            log.exception(
                "comparison report FAILED for the sweep in %s (the runs' own results are not "
                "affected; rebuild it with: python -m newsrec.report %s)",
                sweep_dir,
                sweep_dir,
            )
            return
        log.info(
            "comparison report written: %s (and comparison.csv, comparison.png)\n%s",
            markdown,
            markdown.read_text(encoding="utf-8"),
        )
