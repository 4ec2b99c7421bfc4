"""`search --strategy predicted`: search on the target's predictors, measure only what they
shortlist, refit on the measurements, again.

One round: Optuna's NSGA-II over the predictors (:func:`effvit_nas.predict.search.predicted_search`,
>= 10,000 candidates by default, one pool for every budget); per budget study, the shortlist
is the predicted front of the candidates whose optimistic throughput (top of the 90 %
interval) reaches the budget, plus every candidate within the predictors' error of that front
(:func:`~effvit_nas.predict.search.shortlist`), minus the architectures the study already
holds. Those are enqueued into the study as Optuna trials carrying the predictions
(``Attr.PREDICTOR_*``) and run by the ordinary search loop (:func:`effvit_nas.search.loop.run_search`):
measured on the device, scored by the proxy, told with measured values, so constraints, the
Pareto set, plots and exports never see a predicted figure. Then the efficiency predictor is
refitted on its calibration plus every measurement of the studies (and stored), and the next
round runs on it; the run ends when no study has anything new on its shortlist, or when
``--trials`` (per study) or ``--timeout`` (the whole run, after the calibration; within a
round shared evenly by the budgets still to run) is used up. A round measures at most
``round_size`` of its shortlist before the refit, those that add the most predicted
hypervolume to the study's measured points first (:func:`~effvit_nas.predict.search.by_gain`);
what a stopped round leaves queued is closed as PRUNED, so no later run measures it first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import UserError
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import preset_configs
from effvit_nas.predict.efficiency import MIN_POINTS, EfficiencyPredictor, HeldOut, fit_efficiency
from effvit_nas.predict.search import Candidate, by_gain, predicted_search, shortlist
from effvit_nas.predict.store import PredictorStore
from effvit_nas.search.loop import SearchSummary, TrialEvent, run_search
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import SearchProblem
from effvit_nas.search.study import open_study
from effvit_nas.trials.pareto import on_front
from effvit_nas.trials.records import Attr

# proxies whose value the predicted search computes exactly from the config (the analytic
# features are the built model's): their accuracy predictor has no error
ANALYTIC_PROXIES = ("macs", "params")


def check_proxy_supported(proxy: str) -> None:
    """UserError unless the predicted strategy has an accuracy predictor for ``proxy``. The
    chosen predictor of :mod:`effvit_nas.predict.accuracy` (ridge on features + the supernet's
    top-1) needs a supernet score per candidate, about a second each: not for 10,000."""
    if proxy not in ANALYTIC_PROXIES:
        raise UserError(
            f"--strategy predicted supports --proxy {' or '.join(ANALYTIC_PROXIES)} (computed from the config); "
            f"{proxy!r} has no predictor cheap enough for its 10,000 candidates: use --strategy measure"
        )


def proxy_predictor(proxy: str, img_size: int, num_classes: int) -> Callable[[ArchConfig], float]:
    """The accuracy predictor of the study's proxy: its value by arithmetic, at the proxy's
    resolution and classes, as :mod:`effvit_nas.proxy.registry` computes it on the built model."""
    check_proxy_supported(proxy)
    return lambda cfg: analytic_features(cfg.replace(img_size=img_size, num_classes=num_classes))[proxy]


class TargetPredictor:
    """A target's stored profile (:mod:`effvit_nas.predict.profile`), the points it is fitted
    on, and its refit: calibration points plus the studies' measurements, stored back."""

    def __init__(self, record: dict[str, Any], space: SearchSpace, url: str):
        self.record, self.url = record, url
        self.predictor = EfficiencyPredictor.from_dict(record["predictor"])
        cal = record["calibration"]
        # profiles stored before the configs were kept: the presets among the labels
        presets = preset_configs(space)
        configs = [ArchConfig.from_dict(c) for c in cal["configs"]] if "configs" in cal else [presets.get(n) for n in cal["labels"]]
        self.base = {c.short_hash(): (c, t) for c, t in zip(configs, cal["throughput"], strict=True) if c is not None}

    def refit(self, measured: dict[str, tuple[ArchConfig, float]]) -> HeldOut | None:
        """Fit again on the calibration and ``measured`` (a study's figure replaces the
        calibration's of the same architecture), store it; None when too few points."""
        points = {**self.base, **measured}
        if len(points) < MIN_POINTS:
            return None
        feats = [analytic_features(c) for c, _ in points.values()]
        tp = np.array([t for _, t in points.values()])
        self.predictor, held = fit_efficiency(feats, tp, self.predictor.feature_set)
        self.record = {
            **self.record,
            "predictor": self.predictor.to_dict(),
            "terms": self.predictor.terms(),
            "held_out": held.to_dict(),
            "refit": {"points": len(points), "from_searches": len(measured), "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")},
        }
        r = self.record
        PredictorStore(self.url).put(r["device"]["id"], r["protocol_key"], r["metric"], r["space"], r)
        return held


def pareto_hashes(candidates: list[Candidate]) -> set[str]:
    """The predicted front (max throughput, max accuracy) of ``candidates``, as hashes."""
    return {c.config.short_hash() for c in on_front(candidates, lambda c: (c.throughput.throughput, c.accuracy))}


def budget_shortlist(candidates: list[Candidate], budget: float, accuracy_margin: float = 0.0) -> tuple[int, list[Candidate]]:
    """(size of the predicted front, shortlist) among the candidates that may reach ``budget``
    (images/s) within the predictor's interval."""
    reach = [c for c in candidates if c.throughput.high >= budget]
    front = pareto_hashes(reach)
    return len(front), shortlist([dataclasses.replace(c, on_front=c.config.short_hash() in front) for c in reach], accuracy_margin)


@dataclass(frozen=True)
class BudgetRun:
    """One study of the run: its problem and how it runs (``options.trials``: the finished
    trials it should hold at most; ``options.timeout_s``: the whole run's limit)."""

    problem: SearchProblem
    options: RunOptions


@dataclass(frozen=True)
class PoolSettings:
    """The NSGA-II search on the predictors: trials (candidates), population, seed of round 1;
    ``round_size``: the most shortlisted architectures one round measures (largest predicted
    hypervolume gain first) before the predictor is refitted (a shortlist holds hundreds:
    measuring all before learning from any would spend the run on the first, least informed,
    prediction)."""

    candidates: int = 10_000
    population: int = 50
    seed: int = 0
    round_size: int = 16


def _enqueue(run: BudgetRun, space: SearchSpace, todo: list[Candidate], rnd: int, cap: int) -> tuple[int, int]:
    """Enqueue at most ``cap`` shortlisted architectures the study does not hold yet, those that
    add the most predicted hypervolume to its measured points first (:func:`by_gain`), with
    their predictions; (new ones, complete trials)."""
    handle = open_study(run.problem, run.options)
    records = handle.records()
    known = {r.config_hash for r in records}
    measured = [
        (float(r.accuracy), float(r.throughput))
        for r in records
        if r.state == "COMPLETE" and r.measured and r.accuracy is not None and r.throughput is not None
    ]
    new = by_gain([c for c in todo if c.config.short_hash() not in known], measured, run.problem.budget, cap)[:cap]
    if run.options.trials is not None:  # the study should hold at most --trials finished trials
        complete = sum(r.state == "COMPLETE" for r in records)
        new = new[: max(run.options.trials - complete, 0)]
    for c in new:
        p = c.throughput
        attrs = {str(Attr.PREDICTOR_THROUGHPUT): [p.throughput, p.low, p.high], str(Attr.PREDICTOR_ACCURACY): c.accuracy}
        attrs[str(Attr.PREDICTOR_ROUND)] = rnd
        handle.study.enqueue_trial(space.params_from_config(c.config), user_attrs=attrs, skip_if_exists=True)
    return len(new), sum(r.state == "COMPLETE" for r in records)


def drop_unmeasured(run: BudgetRun) -> int:
    """Close as PRUNED the shortlisted trials still queued when a round stopped (--timeout,
    Ctrl-C), so that no later run of the study, of either strategy, measures them first; how many."""
    import optuna  # lazy: Optuna costs a second to import

    study = open_study(run.problem, run.options, create=False).study
    waiting = [
        t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING]) if Attr.PREDICTOR_ROUND in t.user_attrs
    ]
    storage = optuna.storages.get_storage(run.options.storage)  # by trial id: study.ask() would pop any queued trial
    study_id = storage.get_study_id_from_name(run.options.study)
    for t in waiting:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, str(Attr.NOTE), "shortlisted by the predictors, not measured before the run stopped")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.PRUNED)
    return len(waiting)


def measured_points(runs: list[BudgetRun]) -> dict[str, tuple[ArchConfig, float]]:
    """Every architecture measured in the studies, with its throughput (images/s)."""
    out: dict[str, tuple[ArchConfig, float]] = {}
    for run in runs:
        for r in open_study(run.problem, run.options, create=False).records(("COMPLETE",)):
            if r.measured and r.throughput and r.config is not None and r.config_hash is not None:
                out[r.config_hash] = (ArchConfig.from_dict(r.config), float(r.throughput))
    return out


def specialise(
    runs: list[BudgetRun],
    space: SearchSpace,
    target: TargetPredictor,
    accuracy: Callable[[ArchConfig], float],
    pool: PoolSettings,
    on_note: Callable[[str], None],
    on_event: Callable[[SearchProblem], Callable[[TrialEvent], None] | None],
) -> dict[str, SearchSummary]:
    """Rounds of predict, shortlist, measure, refit (module doc); the last summary of each
    study that ran (its Pareto set and counts are the study's, all rounds together)."""
    timeout = runs[0].options.timeout_s
    deadline = time.time() + timeout if timeout else None
    summaries: dict[str, SearchSummary] = {}
    rnd = 0
    while True:
        rnd += 1
        t0 = time.perf_counter()
        cands = predicted_search(space, target.predictor, accuracy, pool.candidates, pool.seed + rnd - 1, pool.population)
        on_note(
            f"round {rnd}: NSGA-II on the predictors, {pool.candidates} candidates ({len(cands)} distinct) in {time.perf_counter() - t0:.1f} s"
        )
        ran = False
        for i, run in enumerate(runs):
            # the time left is shared by the budgets still to run this round (what one leaves
            # unused goes to the next), so the first one's shortlist cannot starve the others
            remaining = (deadline - time.time()) / (len(runs) - i) if deadline else None
            if remaining is not None and remaining <= 0:
                break
            front, todo = budget_shortlist(cands, run.problem.budget)
            new, complete = _enqueue(run, space, todo, rnd, pool.round_size)
            on_note(f"  {run.options.study}: predicted front {front}, shortlist {len(todo)}, {new} new to measure")
            if not new:
                continue
            opts = dataclasses.replace(run.options, trials=complete + new, timeout_s=remaining)
            try:
                summaries[run.options.study] = s = run_search(run.problem, opts, on_event(run.problem))
            finally:
                if dropped := drop_unmeasured(run):
                    on_note(f"  {run.options.study}: {dropped} shortlisted not measured before the run stopped (kept as PRUNED)")
            ran = True
            if s.interrupted:
                return summaries
        if not ran or (deadline is not None and time.time() >= deadline):
            return _completed(runs, summaries)
        held = target.refit(measured_points(runs))
        if held is not None:
            on_note(
                f"refit on {target.record['refit']['points']} architectures: held out within ±10 % {100 * held.within_10:.1f} %, "
                f"Spearman {held.spearman:+.3f}"
            )


def _completed(runs: list[BudgetRun], summaries: dict[str, SearchSummary]) -> dict[str, SearchSummary]:
    """``summaries`` plus one for each study with trials that had nothing new this run (a
    study holding its trials starts no actor)."""
    for run in runs:
        if run.options.study not in summaries:
            complete = len(open_study(run.problem, run.options).records(("COMPLETE",)))
            if complete:
                opts = dataclasses.replace(run.options, trials=complete, timeout_s=None)
                summaries[run.options.study] = run_search(run.problem, opts)
    return summaries
