"""Keep large CPU buffers for reuse instead of returning them to the OS after every step.

glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and gives them back with ``munmap`` when freed, so every large tensor of every step
is page-faulted in again, page by page. The exact Jacobian and Cross-Lipschitz penalties
back-propagate D cotangents at once (tensors of D·B·C·H·W floats, e.g. 128 MiB for
small-cnn at batch 128 on 28×28 images) and spent about two thirds of their step in page
faults: measured on 2 CPU cores, the exact-Jacobian step fell from 27–31× to 11× the
cross-entropy step with this tuning (the cross-entropy step itself did not change).

:func:`tune_cpu_allocator` asks glibc to serve every block from its heap (``M_MMAP_MAX = 0``)
and not to trim the heap's top (``M_TRIM_THRESHOLD`` maximal), the effect PyTorch's
performance guide gets from swapping in jemalloc or tcmalloc. Freed memory stays with the
process for reuse, so its resident size stays at its peak. It is a no-op outside glibc, and
``ROBENCH_KEEP_MALLOC=1`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
tuned: bool | None = None
"""None until :func:`tune_cpu_allocator` first ran; then whether its settings are in effect."""


def tune_cpu_allocator() -> bool:
    """Apply the glibc settings once per process; True when they are in effect."""
    global tuned
    if tuned is not None:
        return tuned
    tuned = False
    if os.environ.get("ROBENCH_KEEP_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return tuned
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    tuned = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _INT_MAX))
    return tuned
