"""The Ray proxy runner when a proxy task's worker process dies (the OOM killer, a crash)."""

import os

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


def test_a_device_actor_gone_for_good_is_replaced_and_the_measurement_made(tmp_path, local_ray):
    """The device actor is named and shared: a second driver on one cluster measures through
    the first driver's actor, which dies for good when that driver's job ends (no restart).
    The measurement then starts a new actor and is made, instead of failing this and every
    later trial (was: "stopping: 25 candidates failed" in the second driver)."""
    from effvit_nas.measure.actor import DeviceWorker
    from effvit_nas.search.execution import RayExecution
    from tests.search.test_search import _tiny_settings
    from tests.support import TINY

    problem, _ = _tiny_settings(f"sqlite:///{tmp_path}/e.db", "e", trials=1)
    execution = RayExecution(problem, f"sqlite:///{tmp_path}/e.db", None)
    # an actor of its own stands for the other driver's: the session's named actor, which the
    # other tests reuse, must stay alive
    gone = execution.worker = local_ray.remote(DeviceWorker).options(num_cpus=1).remote("cpu")
    local_ray.kill(gone, no_restart=True)
    m = execution.measure(TINY.replace(img_size=32, num_classes=4))
    assert m.throughput > 0 and not m.cached
    assert execution.worker._actor_id != gone._actor_id
