"""The Ray execution: a proxy task's worker process dying, a device actor gone, what may
overlap on a CPU node, a figure another driver is timing."""

import os
from dataclasses import replace
from datetime import UTC, datetime

from effvit_nas.search.execution import PROXY_TASK_OPTIONS
from effvit_nas.search.screening import failed


def _dies(times: int, marker: str):
    """A task body that kills its own worker process the first ``times`` attempts (counted in
    ``marker``), then returns. Nested, so Ray ships it by value and imports no test module."""

    def task() -> str:
        with open(marker, "a") as f:
            f.write("x")
        with open(marker) as f:
            attempt = len(f.read())
        if attempt <= times:
            os._exit(9)
        return f"done at attempt {attempt}"

    return task


def test_a_killed_proxy_worker_is_retried_once_then_fails_the_trial_with_its_reason(tmp_path, local_ray):
    """With the search's task options: killed once, the proxy is re-run and completes; killed
    on every attempt, Ray's WorkerCrashedError becomes the trial's one-line failure reason."""
    once = local_ray.remote(**PROXY_TASK_OPTIONS)(_dies(1, str(tmp_path / "once")))
    assert local_ray.get(once.remote()) == "done at attempt 2"

    always = local_ray.remote(**PROXY_TASK_OPTIONS)(_dies(99, str(tmp_path / "always")))
    try:
        local_ray.get(always.remote())
        raise AssertionError("a task killed on every attempt returned")
    except local_ray.exceptions.WorkerCrashedError as e:
        outcome = failed(e)
    assert (tmp_path / "always").read_text() == "xx"  # the first attempt and one retry
    reason = outcome.attrs["fail_reason"]
    assert outcome.failed and reason.startswith("WorkerCrashedError: ") and "\n" not in reason


def _execution(tmp_path, **kw):
    from effvit_nas.search.execution import RayExecution
    from tests.support import tiny_search_settings

    problem, _ = tiny_search_settings(f"sqlite:///{tmp_path}/e.db", "e", trials=1, **kw)
    return RayExecution(problem, f"sqlite:///{tmp_path}/e.db", None)


def test_a_device_actor_gone_for_good_is_replaced_and_the_measurement_made(tmp_path, local_ray):
    """The device actor is named and shared: a second driver on one cluster measures through
    the first driver's actor, which dies for good when that driver's job ends (no restart).
    The measurement then starts a new actor and is made, instead of failing this and every
    later trial (was: "stopping: 25 candidates failed" in the second driver)."""
    from dataclasses import replace

    from effvit_nas.measure.actor import DeviceWorker
    from tests.support import TINY

    execution = _execution(tmp_path)
    # an actor of its own stands for the other driver's: the session's named actor, which the
    # other tests reuse, must stay alive
    gone = local_ray.remote(DeviceWorker).options(num_cpus=1).remote("cpu")
    execution.members[0] = replace(execution.members[0], handle=gone)
    local_ray.kill(gone, no_restart=True)
    execution.start_measure(7, TINY.replace(img_size=32, num_classes=4))
    key, m = execution.next_result()
    assert key == 7 and m.throughput > 0 and not m.cached
    assert execution.members[0].handle._actor_id != gone._actor_id


def test_several_targets_on_a_replaced_actor_are_all_measured(tmp_path, local_ray):
    """Two targets timed by one device actor (trace throughput, onnxruntime latency): when that
    actor is gone for good, the candidate is measured on a new one for both targets, instead
    of failing (was: a killed actor failed the candidate of a several-target study)."""
    from dataclasses import replace

    from effvit_nas.measure.actor import DeviceWorker
    from effvit_nas.search.execution import RayExecution
    from effvit_nas.search.problem import TargetProblem
    from tests.support import TINY, tiny_search_settings

    url = f"sqlite:///{tmp_path}/e.db"
    problem, _ = tiny_search_settings(url, "e", trials=1)
    second = TargetProblem(
        "cpu", 1.0, replace(problem.bench, backend="onnxruntime", metric="latency", batch=1), spec="cpu/onnxruntime:1000ms"
    )
    problem = replace(problem, targets=(problem.first_target(), second))
    execution = RayExecution(problem, url, None)
    gone = local_ray.remote(DeviceWorker).options(num_cpus=1).remote("cpu")
    execution.members[0] = replace(execution.members[0], handle=gone)
    local_ray.kill(gone, no_restart=True)
    execution.start_measure(7, TINY.replace(img_size=32, num_classes=4))
    key, figures = execution.next_result()
    assert key == 7 and not isinstance(figures, Exception), figures
    assert [f.throughput > 0 for f in figures] == [True, True] and figures[1].p50_ms > 0
    assert execution.members[0].handle._actor_id != gone._actor_id


def test_on_a_cpu_no_proxy_runs_beside_a_timing_and_one_architecture_is_timed_once(tmp_path, local_ray):
    """One node, the CPU as the device: while a candidate is timed no proxy may start there,
    and while a proxy runs no timing may; two candidates of one architecture in flight get
    one measurement (the second waits for the first's figure)."""
    from effvit_nas.search.execution import ProxyJob
    from tests.support import TINY

    execution = _execution(tmp_path)
    assert execution.measure_slots == 1 and execution.proxies_block_timing
    cfg = TINY.replace(img_size=32, num_classes=4)
    assert execution.can_measure() and execution.can_proxy()
    execution.start_measure(1, cfg)
    execution.start_measure(2, cfg)  # the same architecture, while the first is timed
    assert not execution.can_proxy() and not execution.can_measure()
    results = dict(execution.next_result() for _ in range(2))
    assert results[1] is results[2] and not results[1].cached
    assert execution.can_proxy()
    execution.start_proxy(3, ProxyJob(cfg, results[1].throughput))
    assert not execution.can_measure()
    key, proxy = execution.next_result()
    assert key == 3 and proxy["proxy"] == "naswot" and execution.can_measure()
    measured_s, proxy_s = execution.busy_seconds()
    assert measured_s > 0 and proxy_s > 0


def test_a_figure_another_driver_is_timing_is_awaited_without_blocking(tmp_path, local_ray):
    """Another driver holds the claim on an architecture: this one does not time it, and does
    not block in start_measure either (two drivers each waiting there for the other's claim
    would stall both); the figure that driver stores is what this one gets."""
    import socket

    from sqlalchemy.orm import Session

    from effvit_nas.measure.store import _ClaimRow
    from tests.support import TINY, fake_measurement

    execution = _execution(tmp_path)
    cfg = TINY.replace(img_size=32, num_classes=4)
    # private: the claim row's key as the execution writes it, to plant another process's claim
    fp_id, key = execution._targets[0].fp_id, execution._targets[0].store_key()
    with Session(execution.store.engine) as s, s.begin():  # a live claim of a process elsewhere
        s.add(_ClaimRow(key=f"{cfg.short_hash()}/{fp_id}/{key}", owner=f"not-{socket.gethostname()}:1", claimed_at=datetime.now(UTC)))
    execution.start_measure(5, cfg)
    assert not execution._running and execution.can_measure()  # parked: no actor taken
    theirs = fake_measurement(cfg, 321.0)
    execution.store.put(replace(theirs, device={**theirs.device, "id": fp_id}), key)
    k, m = execution.next_result()
    assert k == 5 and m.throughput == 321.0 and m.cached
