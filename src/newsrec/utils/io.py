"""Atomic writes: a file or folder appears under its final name only once it is complete.

A run killed half-way (Ctrl-C, a SLURM time limit, a full disk) must never leave a truncated
metrics.json, submission or cache folder that a later run trusts. Everything is written to a
hidden temporary sibling (same folder, hence same file system) and renamed with `os.replace`,
which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """`.<name>.<tag>-<host>-<pid><suffix>` beside `path`.

    Host and process id make it unique among concurrent writers (DDP ranks, SLURM jobs on a
    shared disk) and let a later run tell a dead writer's leftovers from a live one's; the
    suffix is kept because some writers choose the format by it (`np.save`, `savefig`).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{socket.gethostname()}-{os.getpid()}{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, tag: str = "tmp", replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to (a file, or a folder to create).

    When the block ends normally the temporary is renamed to `path`. An existing file is
    replaced; an existing folder is removed first when `replace`, else the rename fails
    with OSError (a folder someone else finished in the meantime stays as it is). When the
    block raises, the temporary is removed and nothing else changes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, tag)
    _remove(tmp)  # a leftover of an earlier process that had the same pid
    try:
        yield tmp
        if replace and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """`path.write_text(text)` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
