"""malloc=fixed: glibc's thresholds really change where a large block lives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from effvit_nas.errors import SettingError
from effvit_nas.measure.settings import BenchSettings

# In a child process (the setting cannot be undone): is a freshly malloc'd 8 MiB block inside
# the [heap] mapping (brk) rather than in a mapping of its own (mmap)?
PROBE = """
import ctypes, sys
from effvit_nas.measure.heap import fix_malloc
if sys.argv[1] == "fixed":
    assert fix_malloc() == ""
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
addr = libc.malloc(8 << 20)
heap = [l.split()[0] for l in open("/proc/self/maps") if l.rstrip().endswith("[heap]")]
lo, hi = (int(x, 16) for x in heap[0].split("-")) if heap else (0, 0)
print("heap" if lo <= addr < hi else "mmap")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc/self/maps")
@pytest.mark.parametrize(("malloc", "where"), [("system", "mmap"), ("fixed", "heap")])
def test_fixed_malloc_serves_large_blocks_from_the_heap(malloc, where):
    out = subprocess.run([sys.executable, "-c", PROBE, malloc], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == where


def test_unknown_malloc_names_the_setting():
    with pytest.raises(SettingError, match=r"BenchSettings\.malloc"):
        BenchSettings(batch=1, malloc="jemalloc")


def test_malloc_is_part_of_the_protocol_key():
    assert BenchSettings(batch=1).key() != BenchSettings(batch=1, malloc="system").key()


def test_without_glibc_the_measurement_says_so():
    from effvit_nas.measure import heap

    class Musl:  # a C library without glibc's mallopt
        pass

    assert heap.fix_malloc(libc=Musl()) == "malloc=fixed not applied: this C library has no mallopt (not glibc)"


def test_a_refused_threshold_is_said_too():
    from effvit_nas.measure import heap

    class Refusing:
        @staticmethod
        def mallopt(param: int, value: int) -> int:
            return 0  # mallopt's "failed"

    assert heap.fix_malloc(libc=Refusing()) == "malloc=fixed not applied: mallopt refused the thresholds"
