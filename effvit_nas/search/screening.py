"""What happens to a candidate before any proxy runs, and how each trial ends.

:class:`Screener` ends every candidate in one of five ways (:class:`OutcomeKind`): its architecture ran
before (``REUSED``), the throughput model calls it clearly infeasible and no audit is due
(``PREDICTED_INFEASIBLE``, never measured), measured under the budget (``UNDER_BUDGET``, its
proxy is not worth running), measured within budget (``NEEDS_PROXY``) or it raised
(``FAILED``). Each ending is an :class:`Outcome`: the attributes, objective values and
constraint the trial is finished with. Nothing here touches Optuna or Ray: the caller
measures between :meth:`Screener.plan` and :meth:`Screener.complete`, and the lookup of
earlier trials is passed in, so every decision is testable with fakes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import Measurement
from effvit_nas.measure.store import is_storage_failure
from effvit_nas.measure.throughput_model import FeasibilityModel, features
from effvit_nas.runtime import root_cause
from effvit_nas.trials.records import REUSED_ATTRS, Attr, TrialRecord


class OutcomeKind(enum.Enum):
    """Which of the five ways a trial ended (:attr:`Outcome.kind`)."""

    REUSED = "reused"
    PREDICTED_INFEASIBLE = "predicted infeasible"
    UNDER_BUDGET = "under budget"
    NEEDS_PROXY = "needs proxy"
    FAILED = "failed"
    COMPLETE = "complete"  # proxy ran


@dataclass(frozen=True)
class Candidate:
    """An architecture the sampler proposed, with its cost."""

    config: ArchConfig
    params: int
    macs: int

    @property
    def config_hash(self) -> str:
        return self.config.short_hash()

    def attrs(self) -> dict[Attr, Any]:
        return {Attr.CONFIG: self.config.to_dict(), Attr.CONFIG_HASH: self.config_hash, Attr.PARAMS: self.params, Attr.MACS: self.macs}


@dataclass(frozen=True)
class Outcome:
    """How a trial ends: attributes to store, objective values (accuracy, throughput) and the
    throughput constraint ``(budget - throughput) / budget`` (feasible when <= 0), or a
    failure. ``NEEDS_PROXY`` outcomes are not final: :func:`with_proxy` completes them."""

    kind: OutcomeKind
    attrs: dict[Attr, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None  # (accuracy, throughput)
    constraint: float | None = None
    throughput: float | None = None  # images/s, measured or reused (None: not measured)
    accuracy: float | None = None
    note: str = ""  # for the progress line
    # several targets: the constraints of the targets after the first, and every target's figure
    more_constraints: tuple[float, ...] = ()
    figures: tuple[float, ...] = ()

    @property
    def feasible(self) -> bool:
        ok = self.constraint is not None and self.constraint <= 0 and all(c <= 0 for c in self.more_constraints)
        return ok and self.values is not None

    @property
    def failed(self) -> bool:
        return self.kind is OutcomeKind.FAILED


def _constraint(throughput: float, budget: float) -> float:
    return (budget - throughput) / budget


def reused(previous: TrialRecord) -> Outcome:
    """A repeat of ``previous``'s architecture: its result, not a second measurement."""
    attrs = {k: previous.attrs[k] for k in REUSED_ATTRS if k in previous.attrs}
    attrs[Attr.NOTE] = f"same architecture as trial {previous.number}: result reused"
    if Attr.TARGETS in previous.attrs:
        attrs[Attr.TARGETS] = previous.attrs[Attr.TARGETS]
    throughput = previous.throughput if previous.measured else None
    return Outcome(
        OutcomeKind.REUSED,
        attrs,
        previous.values,
        previous.constraints.get(CONSTRAINT_KEYS[0]),
        throughput,
        previous.accuracy,
        f"repeat of trial {previous.number}",
        tuple(previous.constraints[k] for k in constraint_keys(len(previous.values or ()) - 1)[1:]),
        tuple(previous.values[1:]) if previous.values and len(previous.values) > 2 else (),
    )


# Optuna constraint keys, one per target: the first target keeps the single-target study's key
CONSTRAINT_KEYS = ("throughput",)


def constraint_keys(targets: int) -> tuple[str, ...]:
    """The constraint key of each of ``targets`` targets: ``throughput``, ``target_2``, ..."""
    return CONSTRAINT_KEYS + tuple(f"target_{i}" for i in range(2, targets + 1))


def predicted_infeasible(predicted: float, budget: float) -> Outcome:
    """Skipped: stored with the predicted throughput as its value, accuracy 0, infeasible."""
    attrs = {
        Attr.PREDICTED_INFEASIBLE: True,
        Attr.PREDICTED_THROUGHPUT: predicted,
        Attr.MEASURED: False,
        Attr.THROUGHPUT: None,
        Attr.NOTE: f"skipped: predicted {predicted:.0f} img/s < budget",
    }
    return Outcome(
        OutcomeKind.PREDICTED_INFEASIBLE,
        attrs,
        (0.0, predicted),
        _constraint(predicted, budget),
        None,
        None,
        "skipped (predicted infeasible)",
    )


def measured(m: Measurement, budget: float, audit_of: float | None = None, predicted: float | None = None) -> Outcome:
    """After the measurement: ``UNDER_BUDGET`` (final, accuracy 0) or ``NEEDS_PROXY``.
    ``audit_of``: the prediction this measurement audits, if it was a would-be skip;
    ``predicted``: the throughput model's prediction made before measuring (None: not fitted yet)."""
    attrs: dict[Attr, Any] = {
        Attr.MEASURED: True,
        Attr.THROUGHPUT: m.throughput,
        Attr.THROUGHPUT_IQR: [m.q1, m.q3],
        Attr.DEVICE_ID: m.device["id"],
    }
    if predicted is not None:
        attrs[Attr.PREDICTED_THROUGHPUT] = predicted
    if audit_of is not None:
        attrs.update({Attr.PREDICTED_INFEASIBLE: True, Attr.PREDICTED_THROUGHPUT: audit_of, Attr.AUDIT: True})
    constraint = _constraint(m.throughput, budget)
    if m.throughput < budget:
        attrs[Attr.NOTE] = "under budget: proxy skipped"
        return Outcome(OutcomeKind.UNDER_BUDGET, attrs, (0.0, m.throughput), constraint, m.throughput, None, "under budget")
    return Outcome(OutcomeKind.NEEDS_PROXY, attrs, None, constraint, m.throughput)


def _target_attr(m: Measurement | None, predicted: float | None) -> dict[str, Any]:
    """One entry of a multi-target trial's ``targets`` attr (CONTRACT.md item 3)."""
    if m is None:
        return {"figure": None, "iqr": None, "measured": False, "device_id": None, "p90_ms": None, "predicted": predicted}
    p90 = m.p90_ms if not math.isnan(m.p90_ms) else None
    return {
        "figure": m.throughput,
        "iqr": [m.q1, m.q3],
        "measured": True,
        "device_id": m.device["id"],
        "p90_ms": p90,
        "predicted": predicted,
    }


def measured_all(
    ms: tuple[Measurement, ...], budgets: tuple[float, ...], audit_of: float | None = None, predicted: tuple[float | None, ...] = ()
) -> Outcome:
    """:func:`measured` for a candidate measured on every target (``budgets`` aligned): infeasible
    (``UNDER_BUDGET``, accuracy 0) when under any target's budget. The first target fills the
    single-target attrs; every target's figure is in ``Attr.TARGETS``, values and constraints."""
    predicted = predicted or (None,) * len(ms)
    first = measured(ms[0], budgets[0], audit_of, predicted[0])
    if len(ms) == 1:
        return first
    figures = tuple(m.throughput for m in ms)
    constraints = tuple(_constraint(f, b) for f, b in zip(figures, budgets, strict=True))
    attrs = {**first.attrs, Attr.TARGETS: [_target_attr(m, p) for m, p in zip(ms, predicted, strict=True)]}
    attrs.pop(Attr.NOTE, None)
    common: dict[str, Any] = {
        "constraint": constraints[0],
        "more_constraints": constraints[1:],
        "throughput": figures[0],
        "figures": figures,
    }
    under = [str(i + 1) for i, c in enumerate(constraints) if c > 0]
    if under:
        attrs[Attr.NOTE] = f"under budget on target {', '.join(under)}: proxy skipped"
        return Outcome(OutcomeKind.UNDER_BUDGET, attrs, (0.0, *figures), note=f"under budget on target {', '.join(under)}", **common)
    return Outcome(OutcomeKind.NEEDS_PROXY, attrs, None, **common)


def predicted_all(predictions: tuple[float, ...], budgets: tuple[float, ...]) -> Outcome:
    """:func:`predicted_infeasible` for several targets: each target's predicted figure is its
    value (as one target's is today), none is measured."""
    first = predicted_infeasible(predictions[0], budgets[0])
    if len(predictions) == 1:
        return first
    constraints = tuple(_constraint(p, b) for p, b in zip(predictions, budgets, strict=True))
    under = ", ".join(str(i + 1) for i, c in enumerate(constraints) if c > 0)
    attrs = {**first.attrs, Attr.TARGETS: [_target_attr(None, p) for p in predictions]}
    attrs[Attr.NOTE] = f"skipped: predicted under budget on target {under}"
    return Outcome(
        OutcomeKind.PREDICTED_INFEASIBLE,
        attrs,
        (0.0, *predictions),
        constraints[0],
        note=first.note,
        more_constraints=constraints[1:],
        figures=predictions,
    )


def with_proxy(pending: Outcome, result: dict[str, Any]) -> Outcome:
    """``pending`` (NEEDS_PROXY) completed by a proxy result (``value``, ``proxy``, ``seconds``)."""
    if pending.throughput is None:
        raise ValueError("with_proxy: the pending outcome has no measured throughput")
    attrs = {**pending.attrs, Attr.ACCURACY: result["value"], Attr.PROXY: result["proxy"], Attr.PROXY_SECONDS: result["seconds"]}
    details = result.get("details") or {}
    note = pending.note
    if "weights_sha256" in details:  # the supernet proxy: which trained weights scored it
        attrs[Attr.PROXY_WEIGHTS] = details["weights_sha256"]
    if "steps" in details:  # the train proxy: record the fidelity its accuracy came from
        attrs[Attr.PROXY_STEPS] = details["steps"]
        if details.get("rungs"):
            attrs[Attr.RUNGS] = {str(k): v for k, v in details["rungs"].items()}
        if details.get("stopped_early"):
            attrs[Attr.PROXY_STOPPED] = True
            note = attrs[Attr.NOTE] = f"stopped at {details['steps']} steps (halving)"
    figures = pending.figures or (pending.throughput,)
    return Outcome(
        OutcomeKind.COMPLETE,
        attrs,
        (result["value"], *figures),
        pending.constraint,
        pending.throughput,
        result["value"],
        note,
        pending.more_constraints,
        pending.figures,
    )


def failed(error: BaseException) -> Outcome:
    """A candidate that raised: stored FAIL with the root cause's first line (Ray wraps
    errors raised in its workers)."""
    cause = root_cause(error)
    text = str(cause).splitlines()[0] if str(cause) else ""
    reason = f"{type(cause).__name__}: {text}"[:500]
    return Outcome(OutcomeKind.FAILED, {Attr.FAIL_REASON: reason}, note=reason)


@dataclass
class ScreenCounts:
    """Predicted-infeasible candidates: skipped, audited (measured anyway) and audits whose
    measurement confirmed the prediction."""

    skipped: int = 0
    audited: int = 0
    audit_correct: int = 0

    @classmethod
    def of(cls, records: list[TrialRecord], budget: float) -> ScreenCounts:
        done = [r for r in records if r.complete]
        return cls(
            skipped=sum(r.skipped for r in done),
            audited=sum(r.audited for r in done),
            audit_correct=sum(r.audited and (r.throughput or 0) < budget for r in done),
        )


def prediction_rank_correlation(records: list[TrialRecord]) -> tuple[float | None, int]:
    """Spearman's rho between the throughput model's predictions and the measurements that
    followed them (each architecture once), and how many pairs: how well the model ranks
    candidates it has not seen, as the search used it. None with fewer than 3 pairs."""
    from scipy.stats import spearmanr  # lazy: SciPy costs start-up time

    pairs = {r.key(): (r.predicted_throughput, r.throughput) for r in records if r.complete and r.measured and r.predicted_throughput}
    if len(pairs) < 3:
        return None, len(pairs)
    predicted, measured_ = zip(*pairs.values(), strict=True)
    return float(spearmanr(predicted, measured_).statistic), len(pairs)


@dataclass(frozen=True)
class Planned:
    """A candidate to measure: its throughput-model features, the model's prediction made before
    measuring (None: not fitted yet) and, for an audit, the prediction it audits."""

    candidate: Candidate
    x: Any
    predicted: float | None
    audit_of: float | None = None
    predictions: tuple[float | None, ...] = ()  # several targets: each one's prediction


def _failure(error: Exception) -> Outcome:
    """A candidate's error as its failed outcome. A setup error (device, storage) is raised
    instead: it would fail every candidate, so it stops the search."""
    if isinstance(error, UserError) or is_storage_failure(error):
        raise error
    return failed(error)


class Screener:
    """Decides how each candidate ends (module doc) in two steps around its measurement, so the
    caller measures where and when it likes: :meth:`plan` (reused, skipped, or to measure) and
    :meth:`complete` (the measurement's outcome). ``previous`` finds the earliest complete
    trial of an architecture hash."""

    def __init__(
        self,
        budget: float,
        model: FeasibilityModel,
        previous: Callable[[str], TrialRecord | None],
        audit_every: int = 4,
        counts: ScreenCounts | None = None,
        more: tuple[tuple[float, FeasibilityModel], ...] = (),
    ):
        self.budget, self.model, self.previous = budget, model, previous
        # several targets: every target's budget and throughput model (``more``: after the first)
        self.budgets = (budget, *(b for b, _ in more))
        self.models = (model, *(m for _, m in more))
        self.audit_every = audit_every
        self.counts = counts or ScreenCounts()

    def plan(self, candidate: Candidate) -> Outcome | Planned:
        """The final outcome of a candidate that needs no measurement, else what to measure."""
        try:
            return self._plan(candidate)
        except Exception as e:
            return _failure(e)

    def complete(self, planned: Planned, measurement: Measurement | tuple[Measurement, ...] | Exception) -> Outcome:
        """The outcome of ``planned`` measured (or its measurement's error): one measurement,
        or one per target for several."""
        if isinstance(measurement, Exception):
            return _failure(measurement)
        ms = measurement if isinstance(measurement, tuple) else (measurement,)
        for model, m in zip(self.models, ms, strict=True):
            model.add(planned.x, m.throughput)
        if planned.audit_of is not None and any(m.throughput < b for m, b in zip(ms, self.budgets, strict=True)):
            self.counts.audit_correct += 1
        return measured_all(ms, self.budgets, planned.audit_of, planned.predictions)

    def _plan(self, candidate: Candidate) -> Outcome | Planned:
        prev = self.previous(candidate.config_hash)
        if prev is not None:
            return reused(prev)
        x = features(candidate.config, candidate.params, candidate.macs)
        audit_of = None
        predictions = tuple(m.predict(x) for m in self.models)
        known = tuple(p for p in predictions if p is not None)
        # only a fitted model predicts; every target's model is fitted on the same candidates
        if len(known) == len(predictions) and any(m.clearly_infeasible(x) for m in self.models):
            if not self._audit_due():
                self.counts.skipped += 1
                return predicted_all(known, self.budgets)
            self.counts.audited += 1
            audit_of = predictions[0]
        return Planned(candidate, x, predictions[0], audit_of, predictions)

    def _audit_due(self) -> bool:
        """Every ``audit_every``-th would-be skip is measured anyway."""
        c = self.counts
        return (c.skipped + c.audited + 1) % self.audit_every == 0
