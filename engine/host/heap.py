"""Keep freed heap memory in the process: numpy temporaries of whole columns without page faults.

glibc serves an allocation above its mmap threshold (128 KiB, raised dynamically up to 32 MiB)
with fresh pages and gives freed memory at the top of the heap back to the kernel past its trim
threshold. A risk record makes temporaries of whole account columns (a mask of 100,000 rows is
100 KB, a gathered int64 column 800 KB), so each one came back as fresh pages to fault in: an
``astype`` of 100,000 int64 took ~0.9 ms instead of ~0.1 ms on the project's VM. With both
thresholds raised the freed blocks are reused. The cost is resident memory that never shrinks below
the peak of the process's temporaries (the stages are long-lived and sized for their peak anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024 * 1024  # a single allocation above this still gets its own pages
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where there is no glibc
    (nothing changes: only slower)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
