"""The search loop: Optuna multi-objective (proxy accuracy, throughput) under a throughput budget.

Why ask/tell and not Ray Tune: Optuna's RDB storage is the single source of truth, so
resuming, heartbeats and PostgreSQL sharing come from Optuna alone; Ray only runs work.

There are no rounds: the loop keeps two candidates per device actor being measured or
screened and waiting (at most 3 x actors + ``workers`` in flight, counting those waiting for a
proxy), and asks Optuna for a new one as soon as a measurement or a trial finishes (TPE's
constant liar keeps it from proposing those in flight again). Each is screened (:mod:`effvit_nas.search.screening`:
reuse, skip, measure), measured when an actor is free, its proxy run when a proxy slot is
free (the longest waiting work first), and finished in one place
(:func:`effvit_nas.search.study.tell`). The execution decides what may overlap: on a CPU
target no proxy runs beside a timing on the same node. Trials of a dead process are failed by
their stale heartbeat and re-run; a candidate that raises is stored as failed with its
reason; Ctrl-C fails the unfinished trials, re-enqueues them and stops with everything stored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.errors import UserError
from effvit_nas.measure.devices import parse_device, resolve_local
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import is_storage_failure, storage_failures_stop
from effvit_nas.measure.throughput_model import FeasibilityModel, features
from effvit_nas.measure.timing import check_supported
from effvit_nas.model.cost import model_cost
from effvit_nas.runtime import Terminated, quiet_optuna
from effvit_nas.search.execution import Execution, Measurer, ProxyJob, ProxyRunner, RayExecution, SerialExecution
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import SearchProblem
from effvit_nas.search.screening import (
    Candidate,
    Outcome,
    OutcomeKind,
    Planned,
    ScreenCounts,
    Screener,
    failed,
    prediction_rank_correlation,
    with_proxy,
)
from effvit_nas.search.study import Heartbeat, StudyHandle, holds_trials, interrupt, open_study, repair_stale, tell
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.trials.records import Attr, TrialRecord, rung_points, study_targets, trial_record

if TYPE_CHECKING:
    import optuna

    from effvit_nas.arch.space import SearchSpace


@dataclass
class TrialEvent:
    """What the progress display gets after every finished trial (throughputs in images/s)."""

    number: int
    state: str
    config_hash: str
    throughput: float | None
    accuracy: float | None
    feasible: bool
    note: str
    done: int
    total: int | None
    feasible_count: int
    best_accuracy: float | None
    pareto_size: int
    eta_s: float | None
    figures: tuple[float, ...] = ()  # several targets: each one's figure (measured, or predicted when skipped)


@dataclass
class SearchSummary:
    study: str
    storage: str
    complete: int
    failed: int
    feasible: int
    pareto: list[dict[str, Any]]
    skipped_predicted: int
    audited: int
    audit_correct: int
    seconds: float
    interrupted: bool = False
    terminated: bool = False  # the interrupt was SIGTERM (exit 143), not Ctrl-C (exit 130)
    run_trials: int = 0
    setup_s: float = 0.0  # Ray start, study, data, before the first trial
    measure_s: float = 0.0  # seconds the device actors spent measuring, summed over actors
    proxy_s: float = 0.0  # seconds from submitting each proxy to its result, summed
    # seconds the device actors were idle after set-up, summed over actors, by reason
    # (effvit_nas.search.usage: "end", "proxy", "other"); empty without Ray
    actor_idle_s: dict[str, float] = field(default_factory=dict)
    measure_actors: int = 1
    measured_by: str = ""  # the device actors, e.g. "2 device actors (cpu: AMD EPYC) on 2 nodes"
    model_spearman: float | None = None  # throughput model: predictions vs the measurements after them
    model_predictions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _enqueue_presets(handle: StudyHandle, space: SearchSpace) -> None:
    """The M0-M5 that are points of the space, unless the study has them already."""
    known = {r.config_hash for r in handle.records()}
    for name, p in PRESETS.items():
        cfg = p.replace(num_classes=space.num_classes)
        if space.contains(cfg) and cfg.short_hash() not in known:
            # skip_if_exists: a preset still waiting from a run stopped early is not queued twice
            handle.study.enqueue_trial(space.params_from_config(cfg), user_attrs={str(Attr.PRESET): name}, skip_if_exists=True)


def _screener(handle: StudyHandle, problem: SearchProblem, options: RunOptions) -> Screener:
    """A screener whose throughput models (one per target) and counts continue from the study's trials."""
    targets = problem.all_targets()
    models = [FeasibilityModel(t.budget) for t in targets]
    records = handle.records(("COMPLETE",))
    for r in records:
        figures = [f for f in _figures(r, len(targets)) if f is not None]
        if r.measured and len(figures) == len(targets) and r.config is not None and r.params is not None and r.macs is not None:
            x = features(ArchConfig.from_dict(r.config), r.params, r.macs)
            for model, figure in zip(models, figures, strict=True):
                model.add(x, figure)
    more = tuple((t.budget, m) for t, m in zip(targets[1:], models[1:], strict=True))
    return Screener(problem.budget, models[0], handle.first_complete, options.audit_every, ScreenCounts.of(records, problem.budget), more)


def _figures(r: TrialRecord, targets: int) -> list[float | None]:
    """A trial's measured figure on each target (None where not measured)."""
    if targets == 1:
        return [r.throughput or None]
    entries = r.attrs.get(Attr.TARGETS) or [{}] * targets
    return [e.get("figure") if e.get("measured") else None for e in entries]


@dataclass
class _AskedTrial:
    """A trial asked and not yet told: its candidate, what it waits for, since when (a tick)."""

    trial: optuna.Trial
    candidate: Candidate | None = None
    planned: Planned | None = None
    pending: Outcome | None = None  # measured, waiting for its proxy
    since: int = 0

    @property
    def screened(self) -> Candidate:
        """Its candidate (a trial whose screening failed has none: it is finished at once)."""
        if self.candidate is None:
            raise ValueError(f"trial {self.trial.number} has no candidate")
        return self.candidate

    @property
    def measuring(self) -> Planned:
        """Its plan, for a trial sent to be measured."""
        if self.planned is None:
            raise ValueError(f"trial {self.trial.number} was not planned for a measurement")
        return self.planned

    @property
    def measured_throughput(self) -> float:
        """The throughput of a trial measured and waiting for its proxy."""
        if self.pending is None or self.pending.throughput is None:
            raise ValueError(f"trial {self.trial.number} has no measurement waiting for its proxy")
        return self.pending.throughput


class _Run:
    """One run of the loop over an open study (see the module doc)."""

    def __init__(
        self,
        handle: StudyHandle,
        space: SearchSpace,
        screener: Screener,
        execution: Execution,
        options: RunOptions,
        on_event: Callable[[TrialEvent], None] | None,
    ):
        self.handle, self.space, self.screener, self.execution = handle, space, screener, execution
        self.options, self.on_event = options, on_event
        self.targets = len(screener.budgets)
        self.t_start = time.perf_counter()
        self.deadline = time.time() + options.timeout_s if options.timeout_s else None
        self.failures = self.run_trials = 0
        self.interrupted = False
        self.terminated = False  # interrupted by SIGTERM rather than Ctrl-C
        self.flight: dict[int, _AskedTrial] = {}
        self.queues: dict[str, deque[int]] = {"measure": deque(), "proxy": deque()}
        # an architecture in flight is measured and scored once: later trials of it wait
        self.leading: dict[str, int] = {}  # architecture hash -> the trial measuring it
        self.followers: dict[str, list[int]] = {}
        self.tick = 0
        self.stale_checked = time.monotonic()
        slots = execution.measure_slots
        # each device actor timing one candidate with the next one screened and waiting, so an
        # actor that finishes starts again at once, not after a tell, an ask and a screen
        self.ahead = 2 * slots
        # trials measured and waiting for their proxy (on a CPU target, for a node that is not
        # timing) do not hold that back, up to one per actor and proxy slot: the constant liar's
        # pending trials stay few
        self.bound = 3 * slots + options.workers

    def done(self) -> int:
        return len(self.handle.records(("COMPLETE",)))

    def should_stop(self) -> bool:
        if self.failures > self.options.failure_limit:
            raise UserError(f"stopping: {self.failures} candidates failed (see `effvit-nas show --study {self.options.study}`)")
        trials_done = self.options.trials is not None and self.done() + len(self.flight) >= self.options.trials
        return trials_done or (self.deadline is not None and time.time() >= self.deadline)

    def loop(self) -> None:
        with Heartbeat(self.handle.storage, self.options.heartbeat_s) as self.heartbeat:
            try:
                while True:
                    self.repair_stale()
                    self.dispatch()  # what is screened and waiting starts before the next ask and screen
                    if not (self.ask_more() or self.flight):
                        break
                    self.beat()
                    self.dispatch()
                    self.receive(*self.execution.next_result())
            except KeyboardInterrupt as e:
                self.interrupted = True
                self.terminated = isinstance(e, Terminated)
                interrupt(self.handle, [f.trial for f in self.flight.values()])
            finally:
                self.heartbeat.assign([])

    def repair_stale(self) -> None:
        """Once per heartbeat interval: a trial of a process that died shortly before this run
        started only goes stale after the grace period, during this run; looking for stale
        trials only at start-up would leave it RUNNING until the next run."""
        if time.monotonic() - self.stale_checked >= self.options.heartbeat_s:
            self.stale_checked = time.monotonic()
            repair_stale(self.handle)

    def beat(self) -> None:
        self.heartbeat.assign([self.handle.trial_id(f.trial) for f in self.flight.values()])

    def to_measure(self) -> int:
        """Trials in flight waiting for their own measurement or being measured."""
        return sum(f.planned is not None and f.pending is None for f in self.flight.values())

    def ask_more(self) -> bool:
        """Ask Optuna for candidates while fewer than ``ahead`` wait to be measured or are being
        measured, within the bound in flight; False once the run should stop (trials or time
        reached). Candidates that need no measurement finish here."""
        while len(self.flight) < self.bound and self.to_measure() < self.ahead:
            if self.should_stop():
                return False
            with quiet_optuna():
                trial = self.handle.study.ask()
            self.flight[trial.number] = _AskedTrial(trial)
            self.beat()  # at once: killed before its first beat, a trial would stay RUNNING
            candidate, plan = self.screen(trial)
            self.flight[trial.number].candidate = candidate
            self.place(trial.number, plan)
        return True

    def place(self, number: int, plan: Outcome | Planned | None) -> None:
        """Send a screened trial on: to be measured, to wait for the trial in flight with its
        architecture (None: it then reuses that result), or finished now."""
        if plan is None:
            self.followers.setdefault(self.flight[number].screened.config_hash, []).append(number)
        elif isinstance(plan, Planned):
            self.flight[number].planned = plan
            self.leading[plan.candidate.config_hash] = number
            self.enqueue("measure", number)
        else:
            self.finish(number, plan)

    def enqueue(self, kind: str, number: int) -> None:
        self.tick += 1
        self.flight[number].since = self.tick
        self.queues[kind].append(number)

    def dispatch(self) -> None:
        """Start the waiting work the execution has room for, the longest waiting first."""
        ex = self.execution
        while True:
            ready = [k for k in self.queues if self.startable(k)]
            if not ready:
                return
            kind = min(ready, key=lambda k: self.flight[self.queues[k][0]].since)
            number = self.queues[kind].popleft()
            f = self.flight[number]
            try:
                if kind == "measure":
                    ex.start_measure(number, f.measuring.candidate.config)
                else:
                    ex.start_proxy(number, ProxyJob(f.screened.config, f.measured_throughput))
            except Exception as e:  # this candidate's failure (a measurement's setup error stops the search)
                self.receive(number, e)

    def startable(self, kind: str) -> bool:
        q, ex = self.queues[kind], self.execution
        if not q:
            return False
        if kind == "measure":
            return ex.can_measure()
        # where a proxy holds timings off its node it never passes an older waiting measurement:
        # started there, it would keep that measurement waiting for the proxy queue to drain
        waiting = self.queues["measure"]
        older = bool(waiting) and self.flight[waiting[0]].since < self.flight[q[0]].since
        return ex.can_proxy() and not (ex.proxies_block_timing and older)

    def receive(self, number: int, result: Any) -> None:
        """A measurement or proxy result of trial ``number``: its next step or its end."""
        f = self.flight[number]
        if f.pending is None:  # its measurement
            outcome = self.screener.complete(f.measuring, result)
            if outcome.kind is OutcomeKind.NEEDS_PROXY:
                f.pending = outcome
                self.enqueue("proxy", number)
                return
        else:
            outcome = failed(result) if isinstance(result, BaseException) else with_proxy(f.pending, result)
        self.finish(number, outcome)

    def screen(self, trial: optuna.Trial) -> tuple[Candidate | None, Outcome | Planned | None]:
        try:
            config = self.space.suggest(trial)
            cost = model_cost(config)
        except UserError:
            raise
        except Exception as e:  # a config the model code cannot build is a failed candidate
            if is_storage_failure(e):
                raise
            return None, failed(e)
        candidate = Candidate(config, cost.params, cost.macs)
        for key, value in candidate.attrs().items():  # stored now: a failure still shows what failed
            trial.set_user_attr(str(key), value)
        if candidate.config_hash in self.leading:  # measured or scored now: wait, then reuse
            return candidate, None
        return candidate, self.screener.plan(candidate)

    def screen_again(self, number: int) -> Outcome | Planned | None:
        candidate = self.flight[number].screened
        return None if candidate.config_hash in self.leading else self.screener.plan(candidate)

    def finish(self, number: int, outcome: Outcome) -> None:
        f = self.flight.pop(number)
        tell(self.handle, f.trial, outcome)
        if outcome.failed:
            self.failures += 1
        else:
            self.run_trials += 1
        self.emit(number, outcome, f.candidate.config_hash if f.candidate else "?")
        if f.planned is not None and self.leading.get(f.planned.candidate.config_hash) == number:
            del self.leading[f.planned.candidate.config_hash]
            for follower in self.followers.pop(f.planned.candidate.config_hash, []):
                # screened again: it reuses this trial's result; if this one failed, the first
                # is measured and leads the others
                self.place(follower, self.screen_again(follower))

    def emit(self, number: int, outcome: Outcome, config_hash: str) -> None:
        if self.on_event is None:
            return

        records = self.handle.records(("COMPLETE",))
        feasible = [r for r in records if r.feasible]
        elapsed = time.perf_counter() - self.t_start
        eta = None
        if self.options.trials and self.run_trials:
            eta = elapsed / self.run_trials * max(self.options.trials - len(records), 0)
        elif self.deadline:
            eta = max(self.deadline - time.time(), 0)
        best = max((r.values[0] for r in feasible if r.values and r.measured and not r.stopped), default=None)
        self.on_event(
            TrialEvent(
                number,
                "FAIL" if outcome.failed else "COMPLETE",
                config_hash,
                outcome.throughput,
                outcome.accuracy,
                outcome.feasible,
                outcome.note,
                len(records),
                self.options.trials,
                len(feasible),
                best,
                len(pareto_trials(self.handle.study)),
                eta,
                outcome.figures,
            )
        )


def run_search(
    problem: SearchProblem,
    options: RunOptions,
    on_event: Callable[[TrialEvent], None] | None = None,
    *,
    measure: Measurer | None = None,
    run_proxies: ProxyRunner | None = None,
) -> SearchSummary:
    """Run (or resume) the search for ``problem`` as ``options`` say; see the module doc.

    ``measure`` and ``run_proxies`` default to Ray (:class:`~effvit_nas.search.execution.RayExecution`):
    the device's actor pool and proxy tasks. Passing both runs the loop without Ray, one piece
    of work at a time (:class:`~effvit_nas.search.execution.SerialExecution`).
    """

    t_start = time.perf_counter()
    space = load_space(problem.space)
    if options.ray_address is None:  # fail on a missing device before touching the study
        for target in problem.all_targets():
            check_local_device(target.device, target.bench)
    handle = open_study(problem, options)
    repair_stale(handle)
    if options.seed_presets:
        _enqueue_presets(handle, space)
    finished = holds_trials(handle.study, options.trials)
    if measure is not None and run_proxies is not None:
        execution: Execution = SerialExecution(measure, run_proxies)
    elif finished:  # a finished study starts no actor, loads no data
        execution = SerialExecution(_nothing_to_run, _nothing_to_run)
    else:
        earlier = lambda: rung_points(handle.records(("COMPLETE",)))  # noqa: E731
        execution = RayExecution(problem, options.storage, options.ray_address, earlier, options.workers, options.measure_actors)
    run = _Run(handle, space, _screener(handle, problem, options), execution, options, on_event)
    setup_s = time.perf_counter() - t_start
    with storage_failures_stop(options.storage):
        try:
            run.loop()
        finally:
            execution.close()
    return _summary(run, time.perf_counter() - t_start, setup_s)


def _nothing_to_run(*_: Any, **__: Any) -> Any:
    raise AssertionError("a finished study's run measured or scored a candidate")


def check_local_device(device: str, bench: BenchSettings) -> None:
    """UserError unless ``device`` is on this machine and can run ``bench``'s protocol."""

    check_supported(bench, resolve_local(parse_device(device)))


def _summary(run: _Run, seconds: float, setup_s: float) -> SearchSummary:
    front = pareto_trials(run.handle.study)
    numbers = {t.number for t in front}
    complete = run.handle.records(("COMPLETE",))
    counts = run.screener.counts
    spearman, predictions = prediction_rank_correlation(complete)
    measure_s, proxy_s = run.execution.busy_seconds()
    return SearchSummary(
        study=run.options.study,
        storage=run.options.storage,
        complete=len(complete),
        failed=len(run.handle.records(("FAIL",))),
        feasible=sum(r.feasible for r in complete),
        pareto=[trial_record(t, numbers, targets=study_targets(run.handle.study.user_attrs.get("effvit") or {})) for t in front],
        skipped_predicted=counts.skipped,
        audited=counts.audited,
        audit_correct=counts.audit_correct,
        seconds=seconds,
        interrupted=run.interrupted,
        terminated=run.terminated,
        run_trials=run.run_trials,
        setup_s=setup_s,
        measure_s=measure_s,
        proxy_s=proxy_s,
        actor_idle_s={k: round(v, 3) for k, v in run.execution.idle_seconds().items()},
        measure_actors=run.execution.measure_slots,
        measured_by=run.execution.describe(),
        model_spearman=spearman,
        model_predictions=predictions,
    )
