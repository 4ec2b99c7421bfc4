"""Where a search's work runs. The loop hands an :class:`Execution` two kinds of work, a
measurement (throughput of one config on the target device) and a proxy (its accuracy proxy),
starts each when the execution has room, and takes results back as they finish; it never
knows how either is computed (Once-for-All's efficiency and accuracy predictors).

:class:`RayExecution` runs measurements on a pool of device actors
(:mod:`effvit_nas.measure.pool`) and proxies as Ray tasks, all at once, except that on a CPU
target no proxy runs on a node while one of its cores is being timed (the timing would be
disturbed): proxies there wait, or run on a node that is not timing. :class:`SerialExecution`
runs plain functions one after the other (tests, no Ray)."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.data import load_data
from effvit_nas.measure.actor import connect
from effvit_nas.measure.pool import alive_nodes, restart_member, start_pool
from effvit_nas.measure.settings import Measurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.proxy.halving import Halving, reporter
from effvit_nas.proxy.registry import evaluate_proxy, preload
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.runtime import import_ray
from effvit_nas.search.problem import SearchProblem
from effvit_nas.search.target_actors import target_actors
from effvit_nas.search.usage import ANY_NODE, actor_idle

# A proxy task's worker killed (OOM killer, a crash) is retried once, as the device actor's
# calls are; killed again, the task's WorkerCrashedError becomes the trial's failure.
PROXY_TASK_OPTIONS = {"num_cpus": 1, "max_retries": 1}
# Seconds between looks at the store for a figure another driver is measuring.
CLAIM_POLL_S = 0.25


class Execution(Protocol):
    """Runs a search's measurements and proxies. Work is started under an integer ``key`` of the
    caller's and comes back from :meth:`next_result` under it, in any order."""

    measure_slots: int  # measurements that can run at once (the pool's actors)
    proxies_block_timing: bool  # a running proxy keeps timings off its node (a CPU target)

    def can_measure(self) -> bool:
        """Whether a measurement started now would run at once."""

    def can_proxy(self) -> bool:
        """Whether a proxy started now would run at once."""

    def start_measure(self, key: int, config: ArchConfig) -> None: ...

    def start_proxy(self, key: int, job: ProxyJob) -> None: ...

    def next_result(self) -> tuple[int, Any]:
        """(key, result) of work that finished, waiting for one: a :class:`Measurement`, a
        proxy result dict, or the exception the work raised."""

    def busy_seconds(self) -> tuple[float, float]:
        """Seconds the measurement actors (summed over actors) and the proxies spent working."""

    def idle_seconds(self) -> dict[str, float]:
        """Seconds the measurement actors were idle since set-up, summed over actors, by reason
        (:func:`effvit_nas.search.usage.actor_idle`); empty when not tracked."""

    def close(self) -> None:
        """Let go of what work still in flight holds (the run stops early)."""

    def describe(self) -> str:
        """What measures, for the summary ("" when nothing to say)."""


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

    settings, report = ShortTrainSettings(**short_train), None
    reached: dict[int, float] = {}  # each rung's top-1
    if halving is not None:
        h = Halving(**halving)
        settings = replace(settings, eval_at=h.rung_steps(settings.steps))
        report = reporter(h, settings.steps, throughput, earlier, reached)
    result = evaluate_proxy(proxy, ArchConfig.from_dict(config), data, settings, report).to_dict()
    if "steps" in result["details"]:
        result["details"]["rungs"] = reached
    return result


class SerialExecution:
    """An :class:`Execution` over plain functions, each piece of work done when started."""

    measure_slots = 1
    proxies_block_timing = False

    def __init__(self, measure: Measurer, run_proxies: ProxyRunner):
        self._measure, self._run_proxies = measure, run_proxies
        self._done: deque[tuple[int, Any]] = deque()
        self._seconds = [0.0, 0.0]

    def can_measure(self) -> bool:
        return True

    def can_proxy(self) -> bool:
        return True

    def start_measure(self, key: int, config: ArchConfig) -> None:
        self._done.append((key, self._timed(0, lambda: self._measure(config))))

    def start_proxy(self, key: int, job: ProxyJob) -> None:
        self._done.append((key, self._timed(1, lambda: next(iter(self._run_proxies([job]))))))

    def _timed(self, which: int, work: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return work()
        except Exception as e:  # the loop records it as the trial's failure
            return e
        finally:
            self._seconds[which] += time.perf_counter() - t

    def next_result(self) -> tuple[int, Any]:
        return self._done.popleft()

    def busy_seconds(self) -> tuple[float, float]:
        return self._seconds[0], self._seconds[1]

    def idle_seconds(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return ""


@dataclass
class _Work:
    """Work in flight on Ray: the keys waiting for it (one measurement serves every candidate
    of its architecture in flight), the pool member or node it runs on, since when."""

    kind: str  # "measure" or "proxy"
    keys: list[int]
    node: str | None
    started: float
    member: int | None = None
    config: ArchConfig | None = None
    claim: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    retried: bool = False
    targets: dict[Any, int] = field(default_factory=dict)  # a measurement's call -> its target
    finished: dict[int, Any] = field(default_factory=dict)  # target -> its finished call

    @property
    def arch(self) -> ArchConfig:
        """The architecture a measurement times."""
        if self.config is None:
            raise ValueError(f"{self.kind} work has no architecture")
        return self.config

    @property
    def actor(self) -> int:
        """The pool member a started measurement runs on."""
        if self.member is None:
            raise ValueError(f"{self.kind} work has no pool member")
        return self.member


def _warm_proxy_worker(data: Any, proxy: str) -> None:
    preload(proxy)


class RayExecution:
    """The device's actor pool measuring (set-up, not part of any trial: the actors start here)
    and proxies as Ray tasks of 1 CPU, at most ``workers`` at once (module doc)."""

    def __init__(
        self,
        problem: SearchProblem,
        storage: str,
        ray_address: str | None,
        earlier: Rungs = dict,
        workers: int = 1,
        measure_actors: int | None = None,
    ):

        self._ray = import_ray()
        self.problem, self.ray_address, self.earlier, self.workers = problem, ray_address, earlier, workers
        self.store = MeasurementStore(storage)
        data = load_data(problem.data)  # params and macs count at the data's resolution and classes too
        connect(ray_address)
        self._data_ref = self._ray.put(data) if data is not None else None
        warming = self._warm_proxy_workers()  # while the device actors start: both are set-up
        self.pool = start_pool(problem.device, problem.bench, ray_address, measure_actors)
        self.members = list(self.pool.members)
        self.measure_slots = len(self.members)
        self._targets = target_actors(problem.all_targets(), self.pool, load_space(problem.space), ray_address)
        self._first_cpu = self.members[0].fingerprint["kind"] == "cpu"
        # nodes where a later target on a CPU of its own (not the first target's device) is timed
        self._cpu_elsewhere = {
            m.node_id: t.target.bench.threads
            for t in self._targets
            if not t.shared and t.pool.members[0].fingerprint["kind"] == "cpu"
            for m in t.pool.members
        }
        self.proxies_block_timing = self._first_cpu or bool(self._cpu_elsewhere)
        self._proxy_nodes = self._spare_cpu_nodes() if self.proxies_block_timing else {}
        self._idle = list(range(len(self.members)))
        self._running: dict[Any, _Work] = {}
        self._by_hash: dict[str, _Work] = {}  # every measurement in flight, by architecture
        self._waiting: list[_Work] = []  # measurements waiting for an actor or another driver's figure
        self._done: deque[tuple[int, Any]] = deque()
        self._seconds = [0.0, 0.0]
        self._task = self._ray.remote(**PROXY_TASK_OPTIONS)(_proxy_task)
        self._ray.get(warming)
        # what the actors did after set-up: spans measuring (by actor) and of proxies that held
        # timings off their node (by node), for idle_seconds
        self._spans: dict[str, dict[Any, list[tuple[float, float]]]] = {"measure": {}, "proxy": {}}
        self._t0 = self._last_start = time.perf_counter()
        self._t_end: float | None = None

    def _warm_proxy_workers(self) -> list[Any]:
        """Start a proxy worker on each node with a CPU, with the proxy code imported and the
        data copied there: seconds of process start per node that are set-up, not a wait of the
        first trials, nor beside their timings (Ray keeps the idle worker for the next task)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # lazy: Ray costs seconds to import

        warm = self._ray.remote(**PROXY_TASK_OPTIONS)(_warm_proxy_worker)
        nodes = [n["NodeID"] for n in alive_nodes() if n["Resources"].get("CPU", 0) >= 1]
        return [
            warm.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(self._data_ref, self.problem.proxy)
            for n in nodes
        ]

    def _spare_cpu_nodes(self) -> dict[str, int]:
        """Node -> CPUs it has for proxies beside its device actor; nodes without an actor first
        (a proxy there never waits for a timing)."""

        held = {**self._cpu_elsewhere, **{m.node_id: self.problem.bench.threads for m in self.members if self._first_cpu}}
        nodes = alive_nodes()
        spare = {n["NodeID"]: int(n["Resources"].get("CPU", 0) - held.get(n["NodeID"], 0)) for n in nodes}
        return {node: spare[node] for node in sorted(spare, key=lambda node: node in held) if spare[node] >= 1}

    def _nodes(self, kind: str) -> list[str | None]:
        return [w.node for w in self._running.values() if w.kind == kind]

    def _free_members(self) -> list[int]:
        blocked = set(self._nodes("proxy")) if self.proxies_block_timing else set()
        if blocked & (set(self._cpu_elsewhere) | {None}):  # a candidate is timed on every target at once
            return []
        return [i for i in self._idle if not (self._first_cpu and self.members[i].node_id in blocked)]

    def _proxy_node(self) -> str | Literal[False] | None:
        """Where a proxy may start now: a node id to pin it to, None (anywhere), or False (wait)."""
        proxies = self._nodes("proxy")
        if len(proxies) >= self.workers:
            return False
        if not self.proxies_block_timing:
            return None
        measuring = self._nodes("measure")
        timing = {n for n in measuring if self._first_cpu} | (set(self._cpu_elsewhere) if measuring else set())
        if not self._proxy_nodes:  # no node can take one: proxies run between timings only
            return None if not timing else False
        return next((n for n, cpus in self._proxy_nodes.items() if n not in timing and proxies.count(n) < cpus), False)

    def can_measure(self) -> bool:
        return bool(self._free_members())

    def can_proxy(self) -> bool:
        return self._proxy_node() is not False

    def start_measure(self, key: int, config: ArchConfig) -> None:
        h = config.short_hash()
        if h in self._by_hash:  # the same architecture is being measured: wait for that figure
            self._by_hash[h].keys.append(key)
            return
        self._by_hash[h] = work = _Work("measure", [key], None, 0.0, config=config)
        self._waiting.append(work)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Measurements waiting: a stored figure (another driver's) answers at once, one that
        another driver is timing (it holds the claim) waits for that figure, the rest start on
        free actors under this driver's claim. Never blocks: two drivers each waiting for a
        claim the other holds would stall both."""
        first = self._targets[0]
        fp_id, key = first.fp_id, first.store_key()
        for work in list(self._waiting):
            h = work.arch.short_hash()
            stored = [self.store.get(h, t.fp_id, t.store_key()) for t in self._targets]
            if None not in stored:
                self._waiting.remove(work)
                self._deliver(work, self._result(stored))
            elif self._free_members() and self.store.claim(h, fp_id, key):
                work.claim.callback(self.store.release, h, fp_id, key)
                work.member = self._free_members()[0]
                self._waiting.remove(work)
                try:
                    self._submit(work)
                except BaseException:
                    work.claim.close()
                    raise

    def _submit(self, work: _Work) -> None:
        """Time ``work`` on every target at once: targets sharing its actor one after the other."""
        member = self.members[work.actor]
        work.targets, work.finished = {}, {}
        for i, target in enumerate(self._targets):
            ref = target.submit(member.handle, work.arch)
            work.targets[ref] = i
            self._running[ref] = work
        self._idle.remove(work.actor)
        work.node, work.started = member.node_id, time.perf_counter()
        self._last_start = work.started

    @staticmethod
    def _result(figures: list[Any]) -> Any:
        """What a measurement delivers: its figure, or one per target for several targets."""
        return figures[0] if len(figures) == 1 else tuple(figures)

    def start_proxy(self, key: int, job: ProxyJob) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # lazy: Ray costs seconds to import

        p, node = self.problem, self._proxy_node() or None
        halving = asdict(p.halving) if p.halving else None
        earlier = self.earlier() if halving else {}
        task = self._task if node is None else self._task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        ref = task.remote(p.proxy, job.config.to_dict(), self._data_ref, asdict(p.short_train), halving, job.throughput, earlier)
        self._running[ref] = _Work("proxy", [key], node, time.perf_counter())

    def next_result(self) -> tuple[int, Any]:
        while not self._done:
            self._start_waiting()
            if self._done:
                break
            if not self._running:  # only figures another driver is timing: look again soon
                time.sleep(CLAIM_POLL_S)
                continue
            refs = list(self._running)
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=CLAIM_POLL_S if self._waiting else None)
            if ready:  # all that finished by now, each charged until now, not until it is read
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            now = time.perf_counter()
            for ref in ready:
                self._collect(ref, now)
        return self._done.popleft()

    def _collect(self, ref: Any, now: float) -> None:
        """A finished call: a proxy's result, or one target's timing (a measurement is done
        once every target's is)."""
        work = self._running.pop(ref)
        if work.kind == "measure":
            work.finished[work.targets[ref]] = ref
            if len(work.finished) < len(self._targets):
                return
        self._seconds[work.kind == "proxy"] += now - work.started
        if work.kind == "proxy":
            result = self._get(ref)
            self._span(work, now, result.get("seconds") if isinstance(result, dict) else None)
            self._done.append((work.keys[0], result))
        else:
            self._span(work, now)
            self._measured(work)

    def _span(self, work: _Work, now: float, compute_s: float | None = None) -> None:
        """Record ``work``'s span. A proxy's node waits from its submission until this driver
        collects it; only the proxy's own computing (``compute_s``, timed in the task) counts
        as proxy time, the rest (Ray's round trip, the driver busy elsewhere) as orchestration."""

        if work.kind == "measure":
            self._spans["measure"].setdefault(work.member, []).append((work.started, now))
        elif self.proxies_block_timing:
            end = now if compute_s is None else min(now, work.started + compute_s)
            self._spans["proxy"].setdefault(work.node or ANY_NODE, []).append((work.started, end))

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except Exception as e:  # the loop records it as the trial's failure
            return e

    def _measured(self, work: _Work) -> None:
        """Store a finished measurement (each target's figure), free its actor, drop the claim,
        hand the figure (or figures) on; any target's error is the candidate's."""

        self._idle.append(work.actor)
        try:
            raw = [self._ray.get(work.finished[i]) for i in range(len(self._targets))]
        except self._ray.exceptions.RayActorError as e:
            # measure again on a new actor when every target is timed on the candidate's (the
            # one that died); a target on another device's pool: the candidate fails (rare)
            if not work.retried and all(t.shared for t in self._targets) and self._resubmit(work):
                return
            result: Any = e
        except Exception as e:
            result = e
        else:
            with work.claim:
                figures = [t.figure(work.arch, r) for t, r in zip(self._targets, raw, strict=True)]
                for t, m in zip(self._targets, figures, strict=True):
                    self.store.put(m, t.store_key())
            result = self._result(figures)
        work.claim.close()
        self._deliver(work, result)

    def _resubmit(self, work: _Work) -> bool:
        """Measure again on a new actor in the slot of one gone for good (it may have been
        another driver's, found by name, gone with that driver's job; a crash Ray restarts is
        retried by Ray itself), once. False when that fails too (its node is gone)."""

        work.retried = True
        try:
            self.members[work.actor] = restart_member(self.members[work.actor], self.problem.device, self.problem.bench, self.ray_address)
            self._submit(work)
        except Exception:  # the trial fails with the actor's error
            return False
        return True

    def _deliver(self, work: _Work, result: Any) -> None:
        del self._by_hash[work.arch.short_hash()]
        self._done.extend((k, result) for k in work.keys)

    def busy_seconds(self) -> tuple[float, float]:
        return self._seconds[0], self._seconds[1]

    def idle_seconds(self) -> dict[str, float]:
        nodes = {i: m.node_id for i, m in enumerate(self.members)}
        window = (self._t0, self._t_end or time.perf_counter())
        return actor_idle(self._spans["measure"], nodes, self._spans["proxy"], window, self._last_start)

    def close(self) -> None:
        """Drop the claims of measurements in flight, so other drivers need not wait for figures
        this run will not store."""
        self._t_end = time.perf_counter()
        for work in self._by_hash.values():
            work.claim.close()

    def describe(self) -> str:
        pools = {id(t.pool): t.pool for t in self._targets}.values()  # each device's once
        return "; ".join(p.describe() for p in pools)
