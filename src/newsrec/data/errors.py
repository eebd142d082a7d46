"""What a data file got wrong: errors that stop preprocessing (`DataError`, `MindFormatError`)
and recoverable oddities that are only counted (`Report`).

The readers of MIND (`newsrec.data.mind`, `newsrec.data.mind_behaviors`) and EB-NeRD share
these, so that train.py / eval.py print every data problem the same way: file, line, remedy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A problem with the user's data or data settings: train.py / eval.py print its message
    (what, where, what to do) without a traceback (HYDRA_FULL_ERROR=1 keeps the traceback)."""


class MindFormatError(DataError):
    """A MIND file that cannot be read as MIND. The message names file, line and remedy."""

    def __init__(self, path: Path | str, line: int | None, problem: str, remedy: str = ""):
        where = f"{path}:{line}" if line is not None else str(path)
        remedy = remedy or "fix or remove that line, or re-download the split"
        super().__init__(f"{where}: {problem}. To fix: {remedy}.")
        self.path, self.line = Path(path), line


@dataclass
class Report:
    """Recoverable oddities, counted; preprocessing logs `lines()`, one line per kind."""

    counts: Counter = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] += int(n)

    def lines(self) -> list[str]:
        return [f"{what}: {n:,}" for what, n in sorted(self.counts.items())]


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for every line; undecodable bytes raise."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MindFormatError(
                    path,
                    number,
                    f"bytes that are not UTF-8 at column {e.start + 1}",
                    "re-download the file; MIND files are UTF-8",
                ) from None
            yield number, text.rstrip("\n").rstrip("\r")
