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

Huge pages. With 4 KiB pages a model's weights lie on pages scattered over physical memory,
differently in every process, and a model whose weights outgrow the CPU's caches (M5: 12 M
parameters) runs at a level that its process drew (ONNX Runtime's batch-1 M5 over 10 fresh
processes: 13.25-14.38 ms). glibc asks the kernel for 2 MiB transparent huge pages under all it
allocates when its tunable ``glibc.malloc.hugetlb=1`` is set (glibc 2.35 or later), which is
read once, when a process starts: the device actor is started with it
(:func:`huge_pages_env`), and the timing process says where it runs without it
(:func:`huge_pages_note`; results/hugepages_cpu.md).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# bytes; some glibc builds refuse an mmap threshold above half their 64 MiB heap size, so 32 MiB
# (above every activation of the CPU protocol) is the fallback
THRESHOLDS = (1 << 30, 32 << 20)
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
# where Linux says whether a process may have transparent huge pages: "always [madvise] never"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


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


def huge_pages_env() -> dict[str, str]:
    """The environment variable a device actor must start with for huge pages, as Ray's
    ``runtime_env`` ``env_vars``: the ``GLIBC_TUNABLES`` of the node it starts on (Ray expands
    ``${GLIBC_TUNABLES}`` there, to "" where unset) with :data:`HUGE_PAGES_TUNABLE` after them.
    The node's own tunables are kept, not the driver's; glibc skips an empty entry and takes a
    tunable's last value, so ours holds (tested on glibc 2.36: tests/measure/test_heap.py)."""
    return {"GLIBC_TUNABLES": "${GLIBC_TUNABLES}:" + HUGE_PAGES_TUNABLE}


def timing_env(pages: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The whole environment to start a process that times with ``pages`` (``huge`` or
    ``system``) in: ``environ`` with glibc's huge-pages tunable added, or taken out."""
    tunables = [*_other_tunables(environ), *([HUGE_PAGES_TUNABLE] if pages == "huge" else [])]
    env = {k: v for k, v in environ.items() if k != "GLIBC_TUNABLES"}
    return env | ({"GLIBC_TUNABLES": ":".join(tunables)} if tunables else {})


def _tunables(environ: Mapping[str, str]) -> list[str]:
    return [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]


def _other_tunables(environ: Mapping[str, str]) -> list[str]:
    return [t for t in _tunables(environ) if not t.startswith("glibc.malloc.hugetlb=")]


def started_with_huge_pages(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a process with this environment started with glibc asking for huge pages (glibc
    takes a tunable's last value)."""
    return [t for t in _tunables(environ) if t.startswith("glibc.malloc.hugetlb=")][-1:] == [HUGE_PAGES_TUNABLE]


def memory_kb(pid: int | str = "self") -> tuple[int, int]:
    """A process's anonymous memory and the part of it on transparent huge pages, in kB
    (``/proc/PID/smaps_rollup``; OSError where it cannot be read)."""
    rows = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if ":" in line)
    return int(rows["Anonymous"].split()[0]), int(rows["AnonHugePages"].split()[0])


def huge_pages_note(environ: Mapping[str, str] = os.environ, thp_mode: Path = THP_MODE, libc: str | None = None) -> str:
    """Why this process runs without huge pages, for the measurement's note; empty when it
    started with them asked for and the kernel gives them. ``libc``: the C library's name and version (default:
    this process's, ``glibc 2.36``)."""
    libc = libc if libc is not None else _libc_version()
    name, _, version = libc.partition(" ")
    if name != "glibc" or tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) < (2, 35):
        return f"pages=huge not applied: {libc or 'this C library'} has no glibc.malloc.hugetlb (glibc 2.35 or later)"
    if not started_with_huge_pages(environ):
        return f"pages=huge not applied: this process started without GLIBC_TUNABLES={HUGE_PAGES_TUNABLE}"
    try:
        mode = thp_mode.read_text()
    except OSError:
        return "pages=huge not applied: this kernel has no transparent huge pages"
    if "[never]" in mode:
        return f"pages=huge not applied: transparent huge pages are off ({thp_mode}: {mode.strip()})"
    return ""


def _libc_version() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # not glibc: the name is unknown to this C library
        return ""
