"""Issue 45 item 9: torch threads default to the CPUs not kept busy, OpenMP waits passively."""

import json
import os

from effvit_nas.runtime import free_cpus, passive_openmp
from tests.support import run_main


def test_free_cpus_is_the_affinity_less_the_load(monkeypatch):
    allowed = len(os.sched_getaffinity(0))
    assert 1 <= free_cpus() <= allowed
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert free_cpus() == allowed
    monkeypatch.setattr(os, "getloadavg", lambda: (allowed - 1.0, 0.0, 0.0))
    assert free_cpus() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0 * allowed, 0.0, 0.0))
    assert free_cpus() == 1  # never fewer than one


def test_passive_openmp_keeps_a_users_choice(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_proxy_command_sizes_its_threads_by_the_load(monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))  # every CPU busy
    args = ["proxy", "M0", "--proxy", "train", "--steps", "1", "--batch", "4", "--img-size", "32", "--train-per-class", "4"]
    r = run_main(capsys, *args, "--val-per-class", "2", "--classes", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["threads"] == 1
    r = run_main(capsys, *args, "--val-per-class", "2", "--classes", "2", "--threads", "2", "--json")
    assert json.loads(r.stdout)["threads"] == 2
