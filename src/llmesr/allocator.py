"""Keep freed memory inside the process for reuse, on glibc (Linux).

Training with full softmax allocates and frees the same large buffers every batch: the (positions
x catalogue) logits and their gradient, tens of megabytes each. glibc serves every allocation above
its mmap threshold (at most 32 MiB) with a fresh ``mmap``, which the kernel zeroes and faults in 4
KiB at a time, and returns it to the kernel on ``free``; on a CPU run that page handling costs about
as much system time as the softmax itself. With mmap allocations off and trimming of the heap top
raised to 1 GiB, freed blocks stay in the heap and the next batch reuses them: the arithmetic, and
so every result, is unchanged (the README, "Benchmarks", has the measured time and memory). The
semantic step's encoder batches (attention and FFN buffers) get the same. The price is that the
process keeps its peak heap instead of giving it back between batches.

Other C libraries (macOS, musl) have no ``mallopt``: there :func:`reuse_freed_memory` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30


def reuse_freed_memory() -> bool:
    """Ask glibc to serve large allocations from the heap and keep freed heap memory (up to 1 GiB
    at the top) for reuse. True when applied (glibc), False where the C library has no such knob.
    Process-wide and idempotent; it changes where memory comes from, never what is computed."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
