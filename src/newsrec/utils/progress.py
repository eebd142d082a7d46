"""One place that builds Rich progress bars, so every long step looks and behaves the same."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def progress_bar(enabled: bool = True, *, transfer: bool = False) -> Progress:
    """A Rich progress bar to use as a context manager; with `enabled=False` it draws nothing
    (its `add_task` / `advance` still work, so callers need no `if`).

    `transfer=True` counts bytes (size and speed, for downloads); otherwise items, `n/total`.
    """
    if transfer:
        columns = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    else:
        columns = (MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), *columns, disable=not enabled
    )
