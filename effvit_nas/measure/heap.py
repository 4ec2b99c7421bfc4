"""glibc's malloc held to one strategy while a process times forward passes on CPU.

Why: by default glibc serves a large block (a forward pass's activations: 1-30 MB at batch 16
and 224 px) with mmap if it is above a threshold that glibc itself raises as blocks are freed,
and gives the heap's top back to the kernel once twice that threshold lies free there. Which way
a tensor goes then depends on the process's allocation history, and a pass whose activations
are mmapped pays fresh page faults in every iteration: the same model, rebuilt in the same
process, times at one of two levels (M2 at 224 px: ~125 or ~152 img/s) from measurement to
measurement (results/throughput_pinning_cpu.md). Fixing both thresholds serves every block
below 1 GiB (32 MiB where glibc refuses more) from a heap that is never trimmed, so every
iteration reuses warm pages (results/throughput_malloc_cpu.md).

The setting is process-wide and cannot be undone (glibc stops adapting the thresholds once one
is set), so it is applied in the process that times (a device actor, `bench`) and kept: what
runs there afterwards only gets the faster, steadier allocation.
"""

from __future__ import annotations

import ctypes
from typing import Any

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# bytes; some glibc builds refuse an mmap threshold above half their 64 MiB heap size, so 32 MiB
# (above every activation of the CPU protocol) is the fallback
THRESHOLDS = (1 << 30, 32 << 20)


def fix_malloc(libc: Any = None) -> str:
    """Fix glibc's mmap and trim thresholds in this process (idempotent, two ``mallopt`` calls:
    cheap enough to ask again for the note); returns "" when done, or why it could not be (not
    glibc), for the measurement's note. ``libc``: the C library to set them in (default: the
    one this process runs on)."""
    try:
        mallopt = (ctypes.CDLL(None) if libc is None else libc).mallopt
    except (OSError, AttributeError):
        return "malloc=fixed not applied: this C library has no mallopt (not glibc)"
    mmap_set = any(mallopt(_M_MMAP_THRESHOLD, t) for t in THRESHOLDS)
    if not (mmap_set and mallopt(_M_TRIM_THRESHOLD, THRESHOLDS[0])):
        return "malloc=fixed not applied: mallopt refused the thresholds"
    return ""
