"""The machine-wide device lock: timings of different processes (other Ray instances, a second
search, a `bench`) never overlap on one device of a machine."""

import json
import os
import subprocess
import sys
import threading

from effvit_nas.measure.timing import LOCK_DIR_ENV, device_lock

# one measurement in a fresh process, printed as JSON (no Ray: the lock is what keeps them apart)
MEASURE = """
import json
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import measure
from tests.support import TINY
m = measure(TINY, BenchSettings(batch=4, backend="eager", warmup_s=0.1, measure_s=0.5, window_s=0.05), "cpu", fingerprint("cpu"))
print(json.dumps({"started": m.started, "finished": m.finished}))
"""


def _overlapped(lock_dir, monkeypatch, first: str, second: str) -> bool:
    """Whether the second holder got its lock while the first still held its own. The first
    lets go when the second has its lock, or after 1 s when the second waits for it (no
    deadlock); no elapsed time is compared, so a slow machine cannot change the answer."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(lock_dir))
    held, release = threading.Event(), threading.Event()
    holding = [False]

    def first_holder() -> None:
        with device_lock(first):
            holding[0] = True
            held.set()
            release.wait(timeout=1.0)
            holding[0] = False

    t = threading.Thread(target=first_holder)
    t.start()
    held.wait()
    with device_lock(second):
        overlapped = holding[0]
    release.set()
    t.join()
    return overlapped


def test_a_second_holder_waits_for_the_first(tmp_path, monkeypatch):
    assert not _overlapped(tmp_path, monkeypatch, "cpu", "cpu")
    assert not _overlapped(tmp_path, monkeypatch, "cuda", "cuda:0")  # one GPU, however it is named


def test_other_devices_do_not_wait(tmp_path, monkeypatch):
    """The control: the wait above comes from sharing a device, not from the lock machinery."""
    assert _overlapped(tmp_path, monkeypatch, "cpu", "cuda:0")
    assert _overlapped(tmp_path, monkeypatch, "cuda:0", "cuda:1")


def test_two_processes_never_time_at_once(tmp_path):
    """Two processes started together: one measures while the other waits, so their timed
    intervals (taken inside the lock) do not overlap."""
    env = {**os.environ, LOCK_DIR_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", MEASURE], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    (a, b) = sorted((json.loads(p.communicate(timeout=120)[0]) for p in procs), key=lambda m: m["started"])
    assert all(p.returncode == 0 for p in procs)
    assert a["finished"] <= b["started"], (a, b)
