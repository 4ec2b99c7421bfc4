"""Where a search's work runs: the Ray implementations of the two things the loop needs, a
measurer (throughput of one config on the target device) and a proxy runner (proxy values of
several configs, in parallel). The loop takes any objects with these shapes, so it never
knows how either is computed (Once-for-All's efficiency and accuracy predictors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.settings import Measurement
from effvit_nas.search.problem import SearchProblem

# A proxy task's worker killed (OOM killer, a crash) is retried once, as the device actor's
# calls are; killed again, the task's WorkerCrashedError becomes the trial's failure.
PROXY_TASK_OPTIONS = {"num_cpus": 1, "max_retries": 1}


class Measurer(Protocol):
    def __call__(self, config: ArchConfig) -> Measurement:
        """Throughput of ``config`` on the study's device with the study's protocol."""


@dataclass(frozen=True)
class ProxyJob:
    """A candidate whose proxy is needed, with its measured throughput (images/s)."""

    config: ArchConfig
    throughput: float


class ProxyRunner(Protocol):
    def __call__(self, jobs: Sequence[ProxyJob]) -> Iterator[dict[str, Any] | BaseException]:
        """For each job in order: its proxy result (``value``, ``proxy``, ``seconds``, and for
        the train proxy ``details`` with the ``steps`` behind the value) or the error it
        raised. All may run at once; results are yielded as they are needed."""


Rungs = Callable[[], Mapping[int, Sequence[tuple[float, float]]]]
"""Earlier candidates' (top-1, throughput) at each successive-halving rung."""


def _proxy_task(
    proxy: str, config: dict[str, Any], data: Any, short_train: dict[str, Any], halving: dict[str, Any] | None, throughput: float, earlier
) -> dict[str, Any]:
    from effvit_nas.proxy.halving import Halving, reporter
    from effvit_nas.proxy.registry import evaluate_proxy
    from effvit_nas.proxy.short_training import ShortTrainSettings

    settings, report, reached = ShortTrainSettings(**short_train), None, {}
    if halving is not None:
        h = Halving(**halving)
        settings = replace(settings, eval_at=h.rung_steps(settings.steps))
        report = reporter(h, settings.steps, throughput, earlier, reached)
    result = evaluate_proxy(proxy, ArchConfig.from_dict(config), data, settings, report).to_dict()
    if "steps" in result["details"]:
        result["details"]["rungs"] = reached
    return result


class RayExecution:
    """One device actor for the whole run (it lives while this object does, and its process
    start is set-up, not part of the first measurement) and proxies as Ray tasks of 1 CPU."""

    def __init__(self, problem: SearchProblem, storage: str, ray_address: str | None, earlier: Rungs = dict):
        from effvit_nas.measure.actor import connect
        from effvit_nas.measure.store import MeasurementStore
        from effvit_nas.proxy.data import load_data
        from effvit_nas.runtime import import_ray

        self._ray = import_ray()
        self.problem, self.ray_address, self.earlier = problem, ray_address, earlier
        self.store = MeasurementStore(storage)
        data = load_data(problem.data)  # params and macs count at the data's resolution and classes too
        connect(ray_address)
        self.worker = self._start_worker()
        self._data_ref = self._ray.put(data) if data is not None else None
        self._task = self._ray.remote(**PROXY_TASK_OPTIONS)(_proxy_task)

    def measure(self, config: ArchConfig) -> Measurement:
        try:
            return self._measure(config)
        except self._ray.exceptions.RayActorError:
            # The device actor is named, and a second driver on one cluster uses the first's
            # actor, which dies with the job that created it: this driver starts its own
            # (a restarted crash is Ray's own retry; this is for an actor gone for good).
            self.worker = self._start_worker()
            return self._measure(config)

    def _start_worker(self) -> Any:
        """The device's actor (found by name or started), checked on its node: a device the
        node lacks is one line, before any trial."""
        from effvit_nas.measure.actor import check_on_worker, get_worker

        worker = get_worker(self.problem.device, self.problem.bench, self.ray_address)
        check_on_worker(worker, self.problem.bench)
        return worker

    def _measure(self, config: ArchConfig) -> Measurement:
        from effvit_nas.measure.actor import measure_against, measure_configs

        p = self.problem
        if p.paired:
            return measure_against(config, self._reference(), p.budget_reference, p.device, p.bench, self.store, self.worker)
        return measure_configs([config], p.device, p.bench, self.store, ray_address=self.ray_address, worker=self.worker)[0]

    def _reference(self) -> ArchConfig:
        """The budget's preset as the budget measured it: at the space's resolution and classes."""
        from effvit_nas.arch.space import load_space
        from effvit_nas.search.budget import parse_relative, reference_config

        space = load_space(self.problem.space)
        _, name = parse_relative(self.problem.budget_spec)
        return reference_config(name, max(space.img_sizes), space.num_classes)

    def run_proxies(self, jobs: Sequence[ProxyJob]) -> Iterator[dict[str, Any] | BaseException]:
        p = self.problem
        halving = asdict(p.halving) if p.halving else None
        earlier = self.earlier() if halving else {}
        futures = [
            self._task.remote(p.proxy, j.config.to_dict(), self._data_ref, asdict(p.short_train), halving, j.throughput, earlier)
            for j in jobs
        ]
        for future in futures:
            try:
                yield self._ray.get(future)
            except Exception as e:  # the loop records it as the trial's failure
                yield e
