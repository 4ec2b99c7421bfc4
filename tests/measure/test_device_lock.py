"""The machine-wide device lock: timings of different processes (other Ray instances, a second
search, a `bench`) never overlap on one device of a machine."""

import json
import os
import subprocess
import sys
import threading
import time

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


def _holds(lock_dir, monkeypatch, first: str, second: str, hold_s: float = 0.6) -> float:
    """Seconds the second holder waited while the first held its lock for ``hold_s``."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(lock_dir))
    held = threading.Event()

    def first_holder() -> None:
        with device_lock(first):
            held.set()
            time.sleep(hold_s)

    t = threading.Thread(target=first_holder)
    t.start()
    held.wait()
    start = time.perf_counter()
    with device_lock(second):
        waited = time.perf_counter() - start
    t.join()
    return waited


def test_a_second_holder_waits_for_the_first(tmp_path, monkeypatch):
    assert _holds(tmp_path, monkeypatch, "cpu", "cpu") >= 0.5
    assert _holds(tmp_path, monkeypatch, "cuda", "cuda:0") >= 0.5  # one GPU, however it is named


def test_other_devices_do_not_wait(tmp_path, monkeypatch):
    """The control: the wait above comes from sharing a device, not from the lock machinery."""
    assert _holds(tmp_path, monkeypatch, "cpu", "cuda:0") < 0.3
    assert _holds(tmp_path, monkeypatch, "cuda:0", "cuda:1") < 0.3


def test_two_processes_never_time_at_once(tmp_path):
    """Two processes started together: one measures while the other waits, so their timed
    intervals (taken inside the lock) do not overlap."""
    env = {**os.environ, LOCK_DIR_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", MEASURE], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    (a, b) = sorted((json.loads(p.communicate(timeout=120)[0]) for p in procs), key=lambda m: m["started"])
    assert all(p.returncode == 0 for p in procs)
    assert a["finished"] <= b["started"], (a, b)
