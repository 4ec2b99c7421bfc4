"""The search loop: Optuna multi-objective (proxy accuracy, throughput) under a throughput budget.

Why ask/tell and not Ray Tune: Optuna's RDB storage is the single source of truth, so
resuming, heartbeats and PostgreSQL sharing come from Optuna alone; Ray only runs work. Each
round the loop asks Optuna for up to ``workers`` candidates, screens each
(:mod:`effvit_nas.search.screening`: reuse, skip, measure), runs the proxies of those within
budget together, and finishes every trial in one place (:func:`effvit_nas.search.study.tell`).
Measuring happens before any proxy of the round starts, so no proxy training disturbs a
timing on the same machine. Trials of a dead process are failed by their stale heartbeat and
re-run; a candidate that raises is stored as failed with its reason; Ctrl-C fails the
round's unfinished trials, re-enqueues them and stops with everything stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.measure.store import is_storage_failure, storage_failures_stop
from effvit_nas.measure.throughput_model import FeasibilityModel, features
from effvit_nas.runtime import quiet_optuna
from effvit_nas.search.execution import Measurer, ProxyJob, ProxyRunner
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import SearchProblem
from effvit_nas.search.records import Attr, rung_points
from effvit_nas.search.screening import Candidate, Fate, Outcome, ScreenCounts, Screener, failed, prediction_rank_correlation, with_proxy
from effvit_nas.search.study import Heartbeat, StudyHandle, interrupt, open_study, tell


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
    run_trials: int = 0
    setup_s: float = 0.0  # Ray start, study, data, before the first trial
    measure_s: float = 0.0  # wall time in throughput measurement calls
    proxy_s: float = 0.0  # wall time from submitting a round's proxies to their last result
    model_spearman: float | None = None  # throughput model: predictions vs the measurements after them
    model_predictions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _TimedMeasurer:
    """A measurer that adds up the wall time spent in it (the summary's ``measure_s``)."""

    def __init__(self, measure: Measurer):
        self.measure, self.seconds = measure, 0.0

    def __call__(self, config: ArchConfig):
        t = time.perf_counter()
        try:
            return self.measure(config)
        finally:
            self.seconds += time.perf_counter() - t


def _enqueue_presets(handle: StudyHandle, space: Any) -> None:
    """The M0-M5 that are points of the space, unless the study has them already."""
    known = {r.config_hash for r in handle.records()}
    for name, p in PRESETS.items():
        cfg = p.replace(num_classes=space.num_classes)
        if space.contains(cfg) and cfg.short_hash() not in known:
            # skip_if_exists: a preset still waiting from a run stopped early is not queued twice
            handle.study.enqueue_trial(space.params_from_config(cfg), user_attrs={str(Attr.PRESET): name}, skip_if_exists=True)


def _screener(handle: StudyHandle, problem: SearchProblem, options: RunOptions, measure: Measurer) -> Screener:
    """A screener whose throughput model and counts continue from the study's trials."""
    model = FeasibilityModel(problem.budget)
    records = handle.records(("COMPLETE",))
    for r in records:
        if r.measured and r.throughput:
            model.add(features(ArchConfig.from_dict(r.config), r.params, r.macs), r.throughput)
    return Screener(problem.budget, model, measure, handle.first_complete, options.audit_every, ScreenCounts.of(records, problem.budget))


class _Run:
    """One run of the loop over an open study (see the module doc)."""

    def __init__(
        self,
        handle: StudyHandle,
        space: Any,
        screener: Screener,
        run_proxies: ProxyRunner,
        options: RunOptions,
        on_event: Callable[[TrialEvent], None] | None,
    ):
        self.handle, self.space, self.screener, self.run_proxies = handle, space, screener, run_proxies
        self.options, self.on_event = options, on_event
        self.t_start = time.perf_counter()
        self.deadline = time.time() + options.timeout_s if options.timeout_s else None
        self.failures = self.run_trials = 0
        self.proxy_s = 0.0
        self.interrupted = False

    def done(self) -> int:
        return len(self.handle.records(("COMPLETE",)))

    def should_stop(self) -> bool:
        if self.failures > self.options.failure_limit:
            raise UserError(f"stopping: {self.failures} candidates failed (see `effvit-nas show --study {self.options.study}`)")
        trials_done = self.options.trials is not None and self.done() >= self.options.trials
        return trials_done or (self.deadline is not None and time.time() >= self.deadline)

    def loop(self) -> None:
        with Heartbeat(self.handle.storage, self.options.heartbeat_s) as hb:
            while not self.should_stop():
                with quiet_optuna():
                    batch = [self.handle.study.ask() for _ in range(self.options.round_size(self.done()))]
                hb.assign([self.handle.trial_id(t) for t in batch])
                try:
                    self.round(batch)
                except KeyboardInterrupt:
                    self.interrupted = True
                    interrupt(self.handle, batch)
                    break
                finally:
                    hb.assign([])

    def round(self, batch: list[Any]) -> None:
        """Screen every candidate (measuring as needed), then run the proxies still needed."""
        pending = []
        for trial in batch:
            candidate, outcome = self.screen(trial)
            if outcome.fate is Fate.NEEDS_PROXY:
                pending.append((trial, candidate, outcome))
            else:
                self.finish(trial, outcome, candidate)
        if not pending:
            return
        t = time.perf_counter()
        results = self.run_proxies([ProxyJob(c.config, o.throughput) for _, c, o in pending])
        for (trial, candidate, outcome), result in zip(pending, results, strict=True):
            final = failed(result) if isinstance(result, BaseException) else with_proxy(outcome, result)
            self.finish(trial, final, candidate)
        self.proxy_s += time.perf_counter() - t

    def screen(self, trial: Any) -> tuple[Candidate | None, Outcome]:
        from effvit_nas.model.cost import model_cost

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
        return candidate, self.screener.decide(candidate)

    def finish(self, trial: Any, outcome: Outcome, candidate: Candidate | None) -> None:
        tell(self.handle, trial, outcome)
        if outcome.failed:
            self.failures += 1
        else:
            self.run_trials += 1
        self.emit(trial.number, outcome, candidate.config_hash if candidate else "?")

    def emit(self, number: int, outcome: Outcome, config_hash: str) -> None:
        if self.on_event is None:
            return
        from effvit_nas.results.pareto import pareto_trials

        records = self.handle.records(("COMPLETE",))
        feasible = [r for r in records if r.feasible]
        elapsed = time.perf_counter() - self.t_start
        eta = None
        if self.options.trials and self.run_trials:
            eta = elapsed / self.run_trials * max(self.options.trials - len(records), 0)
        elif self.deadline:
            eta = max(self.deadline - time.time(), 0)
        best = max((r.values[0] for r in feasible if r.measured and not r.stopped), default=None)
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
    the device's actor and proxy tasks. Passing both runs the loop without Ray.
    """
    from optuna.storages import fail_stale_trials

    from effvit_nas.arch.space import load_space

    t_start = time.perf_counter()
    space = load_space(problem.space)
    if options.ray_address is None:  # fail on a missing device before touching the study
        _check_local_device(problem)
    handle = open_study(problem, options)
    with quiet_optuna():
        fail_stale_trials(handle.study)
    if options.seed_presets:
        _enqueue_presets(handle, space)
    finished = options.trials is not None and len(handle.records(("COMPLETE",))) >= options.trials
    if (measure is None or run_proxies is None) and not finished:  # a finished study starts no actor, loads no data
        from effvit_nas.search.execution import RayExecution

        execution = RayExecution(problem, options.storage, options.ray_address, earlier=lambda: rung_points(handle.records(("COMPLETE",))))
        measure, run_proxies = measure or execution.measure, run_proxies or execution.run_proxies
    timed = _TimedMeasurer(measure or _nothing_to_run)
    run = _Run(handle, space, _screener(handle, problem, options, timed), run_proxies or _nothing_to_run, options, on_event)
    setup_s = time.perf_counter() - t_start
    with storage_failures_stop(options.storage):
        run.loop()
    return _summary(run, problem, options, time.perf_counter() - t_start, setup_s, timed.seconds)


def _nothing_to_run(*_: Any) -> Any:
    raise AssertionError("a finished study's run measured or scored a candidate")


def _check_local_device(problem: SearchProblem) -> None:
    from effvit_nas.measure.devices import parse_device, resolve_local
    from effvit_nas.measure.timing import check_supported

    check_supported(problem.bench, resolve_local(parse_device(problem.device)))


def _summary(run: _Run, problem: SearchProblem, options: RunOptions, seconds: float, setup_s: float, measure_s: float) -> SearchSummary:
    from effvit_nas.results.pareto import pareto_trials
    from effvit_nas.results.studies import trial_record

    front = pareto_trials(run.handle.study)
    numbers = {t.number for t in front}
    complete = run.handle.records(("COMPLETE",))
    counts = run.screener.counts
    spearman, predictions = prediction_rank_correlation(complete)
    return SearchSummary(
        study=options.study,
        storage=options.storage,
        complete=len(complete),
        failed=len(run.handle.records(("FAIL",))),
        feasible=sum(r.feasible for r in complete),
        pareto=[trial_record(t, numbers) for t in front],
        skipped_predicted=counts.skipped,
        audited=counts.audited,
        audit_correct=counts.audit_correct,
        seconds=seconds,
        interrupted=run.interrupted,
        run_trials=run.run_trials,
        setup_s=setup_s,
        measure_s=measure_s,
        proxy_s=run.proxy_s,
        model_spearman=spearman,
        model_predictions=predictions,
    )
