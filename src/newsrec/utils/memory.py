"""Giving freed memory back to the system during long CPU runs.

glibc keeps the memory of freed blocks in its heaps for reuse, and a training step on CPU
frees and allocates tensors whose sizes change with every batch (the distinct news and the
real words of a batch differ each time), so the heaps fragment and the resident size of a
run creeps up over thousands of steps though nothing is leaked. `malloc_trim(0)` returns
the unused tops and whole free pages of every heap to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return None


def release_freed_memory() -> bool:
    """Return freed heap memory to the system (glibc); False where there is no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
