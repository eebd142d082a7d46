"""Hydra callbacks (conf/hydra/default.yaml, `hydra.callbacks`); Lightning's live in conf/callbacks.

`ComparisonReport` writes the comparison table of a multirun into its sweep folder and
refreshes it as each job ends: `python train.py -m model=nrms,npa seed=1,2,3` has
`comparison.md`, `comparison.csv` and `comparison.png` beside the job folders from the
end of its first run on, so a sweep cut short (Ctrl-C, a failed run, a time limit) still
leaves the table of the runs that finished. Each job's log ends with where it is.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

try:
    import fcntl
except ImportError:  # Windows: jobs finishing at the same moment are not serialised
    fcntl = None

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(folder: Path):
    """One writer of the table at a time (parallel jobs of joblib or SLURM on one disk)."""
    with open(folder / ".comparison.lock", "a") as lock:
        with contextlib.suppress(OSError):
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class ComparisonReport(Callback):
    """`newsrec.report.build_report(hydra.sweep.dir)` after each job and after the multirun.

    The runs' results are already safe in their metrics.json when this runs, so a report that
    fails is logged as an error, with the command that rebuilds it, and does not raise.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolved now, once: hydra.sweep.dir usually holds ${now:...}.
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not self.enabled or config.hydra.mode != RunMode.MULTIRUN:
            return
        # Each job carries the sweep's resolved values (a joblib or SLURM job, in its own
        # process, too): its sweep.dir is the folder of the whole sweep.
        sweep_dir = Path(str(config.hydra.sweep.dir))
        failed = job_return.status == JobStatus.FAILED
        markdown = self._write(sweep_dir, quiet=True)
        if markdown is not None:
            log.info(
                "comparison table %s: %s (the runs finished so far; python -m newsrec.report "
                "%s rebuilds it)",
                "kept" if failed else "updated",
                markdown,
                sweep_dir,
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        markdown = self._write(sweep_dir, quiet=False) if self.enabled else None
        if markdown is not None:
            log.info(
                "comparison report written: %s (and comparison.csv, comparison.png)\n%s",
                markdown,
                markdown.read_text(encoding="utf-8"),
            )

    def _write(self, sweep_dir: Path, quiet: bool) -> Path | None:
        """Build the report; None (and a logged reason) when it cannot be built. `quiet`: a
        sweep with no finished run yet is not worth an error line."""
        try:
            from newsrec.report.build import build_report

            sweep_dir.mkdir(parents=True, exist_ok=True)
            with _locked(sweep_dir):
                return build_report(sweep_dir)
        except FileNotFoundError as err:  # no finished run: the message says it all
            if not quiet:
                log.error("comparison report NOT written: %s", err)
        except Exception:
            log.exception(
                "comparison report FAILED for the sweep in %s (the runs' own results are not "
                "affected; rebuild it with: python -m newsrec.report %s)",
                sweep_dir,
                sweep_dir,
            )
        return None
