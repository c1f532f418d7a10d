"""Keep freed memory in the process, so that every update reuses the buffers of the one before.

An update allocates and frees the same multi-megabyte buffers every time (composed weights, activations,
XLA's scratch space). glibc's malloc hands blocks above its mmap threshold back to the OS when they are
freed and trims the heap's top, so each update faults all of them in again, page by page. At the
paper's shapes (`paco bench`, 2-core CPU) that was about 9 600 page faults per MT-SAC update and 14 000 per
PaCo update; with the settings below there are none after the first few updates.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused once freed
TRIM_THRESHOLD = (1 << 31) - 1  # never give the heap's free top back to the OS


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (idempotent); False where there is no glibc to tune."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
