"""malloc=fixed: glibc's thresholds really change where a large block lives."""

from __future__ import annotations

import os
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


# In a child process started with or without glibc's huge-pages tunable: how many kB of a
# freshly written 64 MiB block (from the fixed heap, as in a timing process) lie on huge pages?
HUGE_PROBE = """
import ctypes
from effvit_nas.measure.heap import fix_malloc, huge_pages_note, memory_kb
assert fix_malloc() == ""
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
addr = libc.malloc(64 << 20)
ctypes.memset(addr, 1, 64 << 20)
print(memory_kb()[1], huge_pages_note() or "applied")
"""


def _thp_mode() -> str:
    from effvit_nas.measure.heap import THP_MODE

    try:
        return THP_MODE.read_text()
    except OSError:
        return ""


@pytest.mark.skipif("[madvise]" not in _thp_mode(), reason="transparent huge pages given on madvise only (this kernel's default)")
def test_huge_pages_put_a_large_heap_block_on_huge_pages_and_only_they_do():
    from effvit_nas.measure.heap import timing_env

    runs = {}
    for name in ("system", "huge"):
        out = subprocess.run([sys.executable, "-c", HUGE_PROBE], capture_output=True, text=True, check=True, env=timing_env(name))
        kb, note = out.stdout.split(maxsplit=1)
        runs[name] = int(kb), note.strip()
    assert runs["huge"][0] >= 32 << 10 and runs["huge"][1] == "applied"
    assert runs["system"] == (0, "pages=huge not applied: this process started without GLIBC_TUNABLES=glibc.malloc.hugetlb=1")


@pytest.mark.skipif("[madvise]" not in _thp_mode(), reason="transparent huge pages given on madvise only (this kernel's default)")
@pytest.mark.parametrize(
    "tunables, huge",
    [
        (":glibc.malloc.hugetlb=1", True),
        ("glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1", True),
        ("glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0", False),
    ],
)
def test_glibc_skips_an_empty_tunable_and_takes_the_last_value(tunables, huge):
    """What a node's expanded ``${GLIBC_TUNABLES}:glibc.malloc.hugetlb=1`` relies on."""
    env = {**os.environ, "GLIBC_TUNABLES": tunables}
    out = subprocess.run([sys.executable, "-c", HUGE_PROBE], capture_output=True, text=True, check=True, env=env)
    kb, note = out.stdout.split(maxsplit=1)
    assert (int(kb) >= 32 << 10, note.strip() == "applied") == (huge, huge)


# What a Ray worker does before it starts the actor's process: Ray's own ``update_envs`` expands
# the runtime_env's ``env_vars`` in the node's environment (in a process of its own: it sets them)
EXPAND = """
import os
from ray._private.utils import update_envs
from effvit_nas.measure.heap import huge_pages_env
update_envs(huge_pages_env())
print(os.environ["GLIBC_TUNABLES"])
"""


@pytest.mark.parametrize(
    "node, actor",
    [
        ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1"),
        (None, ":glibc.malloc.hugetlb=1"),
    ],
)
def test_the_actor_keeps_its_nodes_tunables_and_ours_comes_last(node, actor):
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | ({"GLIBC_TUNABLES": node} if node else {})
    out = subprocess.run([sys.executable, "-c", EXPAND], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == actor


def test_the_huge_pages_tunable_keeps_the_users_other_tunables():
    from effvit_nas.measure.heap import timing_env

    user = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", "HOME": "/h"}
    assert timing_env("huge", user) == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/h"}
    assert timing_env("system", user) == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/h"}
    assert timing_env("system", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) == {}


def test_where_huge_pages_cannot_be_had_the_measurement_says_why(tmp_path):
    from effvit_nas.measure.heap import huge_pages_note

    env = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    madvise, never = tmp_path / "madvise", tmp_path / "never"
    madvise.write_text("always [madvise] never\n")
    never.write_text("always madvise [never]\n")
    assert huge_pages_note(env, madvise, "glibc 2.36") == huge_pages_note(env, madvise, "glibc 2.35") == ""
    assert "started without GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in huge_pages_note({}, madvise, "glibc 2.36")
    later = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1"}
    assert huge_pages_note(later, madvise, "glibc 2.36") == ""
    overridden = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0"}
    assert "started without" in huge_pages_note(overridden, madvise, "glibc 2.36")
    from effvit_nas.measure.heap import started_with_huge_pages

    assert started_with_huge_pages(later) and started_with_huge_pages({"GLIBC_TUNABLES": ":glibc.malloc.hugetlb=1"})
    assert not started_with_huge_pages(overridden) and not started_with_huge_pages({})
    assert "transparent huge pages are off" in huge_pages_note(env, never, "glibc 2.36")
    assert "no transparent huge pages" in huge_pages_note(env, tmp_path / "missing", "glibc 2.36")
    assert "glibc 2.31 has no glibc.malloc.hugetlb" in huge_pages_note(env, madvise, "glibc 2.31")
    assert "this C library has no glibc.malloc.hugetlb" in huge_pages_note(env, madvise, "")


def test_pages_is_part_of_the_protocol_key_and_names_its_setting():
    assert BenchSettings(batch=1).key() != BenchSettings(batch=1, pages="system").key()
    with pytest.raises(SettingError, match=r"BenchSettings\.pages"):
        BenchSettings(batch=1, pages="1g")
