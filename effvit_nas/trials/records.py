"""What the search stores on each trial, under named keys, and the one reader of it.

Optuna keeps a trial's objective values (accuracy, throughput), its constraint and free-form
user attributes. The search writes attributes only through :class:`Attr` keys and every reader
goes through :meth:`TrialRecord.of`, so a key's meaning and default live here alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class Attr(StrEnum):
    """User-attribute keys of a trial (stored as these strings)."""

    CONFIG = "config"  # ArchConfig.to_dict()
    CONFIG_HASH = "config_hash"
    PARAMS = "params"
    MACS = "macs"
    MEASURED = "measured"  # True: THROUGHPUT was measured; False: predicted or never reached
    THROUGHPUT = "throughput"  # images/s, measured
    THROUGHPUT_IQR = "throughput_iqr"  # [q1, q3] images/s
    DEVICE_ID = "device_id"  # key of the device fingerprint in the measurement store
    ACCURACY = "accuracy"  # the proxy's value (top-1 in [0, 1] or a zero-cost score)
    PROXY = "proxy"
    PROXY_SECONDS = "proxy_seconds"
    PROXY_STEPS = "proxy_steps"  # train proxy: the updates its accuracy came from
    PROXY_WEIGHTS = "proxy_weights"  # supernet proxy: digest of the weights that scored it (its folder is in PROXY)
    PROXY_STOPPED = "proxy_stopped"  # True: stopped at a halving rung (never in the Pareto set)
    RUNGS = "rungs"  # {step: top-1} at the halving rungs the candidate reached
    PREDICTED_INFEASIBLE = "predicted_infeasible"
    PREDICTED_THROUGHPUT = "predicted_throughput"  # images/s, from the throughput model
    AUDIT = "audit"  # predicted infeasible, measured anyway to check the prediction
    NOTE = "note"
    FAIL_REASON = "fail_reason"
    PRESET = "preset"  # enqueued as this M0-M5 preset
    TARGETS = "targets"  # several targets: one {figure, iqr, measured, device_id, p90_ms, predicted} per study target
    # search --strategy predicted: what the target's predictors said before the measurement
    # (the throughput model's PREDICTED_THROUGHPUT is the screen's, kept apart)
    PREDICTOR_THROUGHPUT = "predictor_throughput"  # [predicted, low, high] images/s, the efficiency predictor's
    PREDICTOR_ACCURACY = "predictor_accuracy"  # the accuracy predictor's value, in the proxy's unit
    PREDICTOR_ROUND = "predictor_round"  # the NSGA-II round that shortlisted it (1, 2, ...)


# What a repeat of an architecture copies from the trial that ran it first.
REUSED_ATTRS = (Attr.MEASURED, Attr.THROUGHPUT, Attr.ACCURACY, Attr.PROXY, Attr.PREDICTED_INFEASIBLE, Attr.PROXY_STEPS, Attr.PROXY_STOPPED)


def is_feasible(trial: FrozenTrial) -> bool:
    """An Optuna trial that finished with values and satisfies every stored constraint (the
    search stores ``(budget - throughput) / budget``, feasible when <= 0)."""
    return bool(trial.values) and all(c <= 0 for c in trial.constraints.values())


def fmt_ms(ms: float) -> str:
    """A latency in ms to the precision it is measured at (``0.352``, ``4.12``, ``123``)."""
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


@dataclass(frozen=True)
class StudyTarget:
    """One deployment target of a study, as stored in its problem (the ``targets`` list, or
    for a one-target study its old keys). ``budget`` is images/s-equivalent: for a latency
    target 1000 / the p50 budget in ms at batch 1."""

    spec: str  # e.g. cpu/openvino:4ms
    device: str
    backend: str
    metric: str  # throughput | latency
    budget: float
    budget_spec: str | None = None
    budget_reference: float | None = None
    bench: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def latency(self) -> bool:
        return self.metric == "latency"

    @property
    def name(self) -> str:
        """``DEVICE/BACKEND``: a column's or panel's name."""
        return f"{self.device}/{self.backend}"

    @property
    def unit(self) -> str:
        return "ms" if self.latency else "img/s"

    def shown(self, figure: float) -> float:
        """An images/s-equivalent figure in this target's unit: p50 ms for latency, img/s otherwise."""
        return 1e3 / figure if self.latency else figure

    def text(self, figure: float | None) -> str:
        """The figure as printed (``1,234 img/s``, ``4.12 ms``); ``-`` without one."""
        if not figure:
            return "-"
        return f"{fmt_ms(self.shown(figure))} ms" if self.latency else f"{figure:,.0f} img/s"

    def budget_text(self) -> str:
        """``>= 1,234 img/s`` or ``<= 4 ms p50``."""
        return f"<= {self.shown(self.budget):.4g} ms p50" if self.latency else f">= {self.text(self.budget)}"

    def protocol(self) -> str:
        """The measurement protocol in words, e.g. ``trace, batch 16, 1 thread, fp32``."""
        b = self.bench
        text = f"{b['backend']}, batch {b['batch']}, {b['threads']} thread{'s' if b['threads'] != 1 else ''}, {b['precision']}"
        return text + (", latency" if self.latency else "")


def study_targets(ident: dict[str, Any]) -> tuple[StudyTarget, ...]:
    """The targets of a study's stored problem: its ``targets`` list, or (a one-target study,
    which does not store one) the one target its old keys describe."""
    if ident.get("targets"):
        return tuple(
            StudyTarget(
                t["spec"],
                t["device"],
                t["backend"],
                t["metric"],
                float(t["budget"]),
                t.get("budget_spec"),
                t.get("budget_reference"),
                dict(t["bench"]),
            )
            for t in ident["targets"]
        )
    bench = dict(ident.get("bench") or {})
    metric, backend = bench.get("metric") or "throughput", bench.get("backend", "trace")
    budget = float(ident["budget"])
    shown = ident.get("budget_spec") or (f"{1e3 / budget:.3g}ms" if metric == "latency" else f"{budget:g}")
    return (StudyTarget(f"{ident['device']}/{backend}:{shown}", ident["device"], backend, metric, budget,
                        ident.get("budget_spec"), ident.get("budget_reference"), bench),)  # fmt: skip


@dataclass(frozen=True)
class TargetFigure:
    """A trial's figure on one target, images/s-equivalent (a latency target's is 1000 / p50 ms)."""

    figure: float | None
    iqr: tuple[float, float] | None = None
    measured: bool = False
    device_id: str | None = None
    p90_ms: float | None = None  # latency targets, when known
    predicted: float | None = None

    @classmethod
    def of(cls, d: dict[str, Any]) -> TargetFigure:
        iqr = d.get("iqr")
        return cls(d.get("figure"), tuple(iqr) if iqr else None, bool(d.get("measured", False)),
                   d.get("device_id"), d.get("p90_ms"), d.get("predicted"))  # fmt: skip


def _target_figures(ua: dict[str, Any]) -> tuple[TargetFigure, ...]:
    """Every target's figure: the ``targets`` attribute of a several-target trial, or the one
    target the old attributes describe."""
    if ua.get(Attr.TARGETS):
        return tuple(TargetFigure.of(d) for d in ua[Attr.TARGETS])
    old = {"figure": ua.get(Attr.THROUGHPUT), "iqr": ua.get(Attr.THROUGHPUT_IQR), "measured": ua.get(Attr.MEASURED, False),
           "device_id": ua.get(Attr.DEVICE_ID), "predicted": ua.get(Attr.PREDICTED_THROUGHPUT)}  # fmt: skip
    return (TargetFigure.of(old),)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the search left it. Throughputs are images/s."""

    number: int
    state: str  # Optuna's TrialState name: COMPLETE, FAIL, RUNNING, WAITING, PRUNED
    values: tuple[float, ...] | None
    constraints: dict[str, float]
    config: dict[str, Any] | None
    config_hash: str | None
    params: int | None
    macs: int | None
    measured: bool
    throughput: float | None
    throughput_iqr: tuple[float, float] | None
    device_id: str | None
    accuracy: float | None
    proxy: str | None
    proxy_seconds: float | None
    predicted_infeasible: bool
    predicted_throughput: float | None
    audit: bool
    note: str
    fail_reason: str
    preset: str | None
    stopped: bool = False  # stopped at a successive-halving rung: a lower-fidelity accuracy
    targets: tuple[TargetFigure, ...] = ()  # one per study target, in its order (the first: throughput, measured, ...)
    attrs: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """Read an Optuna ``FrozenTrial``."""
        ua = trial.user_attrs
        iqr = ua.get(Attr.THROUGHPUT_IQR)
        return cls(
            number=trial.number,
            state=trial.state.name,
            values=tuple(trial.values) if trial.values else None,
            constraints=dict(trial.constraints),
            config=ua.get(Attr.CONFIG),
            config_hash=ua.get(Attr.CONFIG_HASH),
            params=ua.get(Attr.PARAMS),
            macs=ua.get(Attr.MACS),
            measured=bool(ua.get(Attr.MEASURED, False)),
            throughput=ua.get(Attr.THROUGHPUT),
            throughput_iqr=tuple(iqr) if iqr else None,
            device_id=ua.get(Attr.DEVICE_ID),
            accuracy=ua.get(Attr.ACCURACY),
            proxy=ua.get(Attr.PROXY),
            proxy_seconds=ua.get(Attr.PROXY_SECONDS),
            predicted_infeasible=bool(ua.get(Attr.PREDICTED_INFEASIBLE, False)),
            predicted_throughput=ua.get(Attr.PREDICTED_THROUGHPUT),
            audit=bool(ua.get(Attr.AUDIT, False)),
            note=ua.get(Attr.NOTE, ""),
            fail_reason=ua.get(Attr.FAIL_REASON, ""),
            preset=ua.get(Attr.PRESET),
            stopped=bool(ua.get(Attr.PROXY_STOPPED, False)),
            targets=_target_figures(ua),
            attrs=dict(ua),
        )

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"

    @property
    def feasible(self) -> bool:
        """Complete, with values, every constraint satisfied."""
        return self.complete and bool(self.values) and all(c <= 0 for c in self.constraints.values())

    @property
    def measured_all(self) -> bool:
        """Measured on every target (for one target: ``measured``)."""
        return bool(self.targets) and all(t.measured for t in self.targets)

    @property
    def skipped(self) -> bool:
        """Never measured: the throughput model called it infeasible and no audit was due."""
        return self.predicted_infeasible and not self.measured

    @property
    def audited(self) -> bool:
        """Predicted infeasible and measured anyway."""
        return self.predicted_infeasible and self.measured

    def key(self) -> str:
        """The architecture's id (its config hash), or the trial number before it had one."""
        return self.config_hash or str(self.number)


def rung_points(records: list[TrialRecord]) -> dict[int, list[tuple[float, float]]]:
    """(top-1, throughput) of the complete, measured trials at each halving rung they reached:
    what the next candidate's promotions are judged against."""
    out: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        if r.complete and r.measured and r.throughput:
            for step, top1 in (r.attrs.get(Attr.RUNGS) or {}).items():
                out.setdefault(int(step), []).append((float(top1), float(r.throughput)))
    return out


def target_figures(r: TrialRecord, targets: tuple[StudyTarget, ...]) -> list[dict[str, Any]]:
    """A trial's figure on each of ``targets`` in its unit: ``throughput`` (img/s), or
    ``p50_ms`` and ``p90_ms`` for latency; ``figure`` images/s-equivalent."""
    out = []
    for i, target in enumerate(targets):
        f = r.targets[i] if i < len(r.targets) else TargetFigure(None)  # a failed trial may have none
        row: dict[str, Any] = {
            "target": target.spec,
            "name": target.name,
            "metric": target.metric,
            "figure": f.figure,
            "measured": f.measured,
            "device_id": f.device_id,
        }
        if target.latency:
            row.update(p50_ms=target.shown(f.figure) if f.figure else None, p90_ms=f.p90_ms)
        else:
            row["throughput"] = f.figure
        row["feasible"] = None if f.figure is None else f.figure >= target.budget
        out.append(row)
    return out


def trial_record(
    t: FrozenTrial, pareto_numbers: set[int] | None = None, trained: dict[str, Any] | None = None, targets: tuple[StudyTarget, ...] = ()
) -> dict[str, Any]:
    """The row of one trial as `show` prints it (JSON keys are the issue's, plus
    ``trained_top1`` once `effvit-nas train` trained it, and with the study's ``targets`` each
    target's figure in its unit)."""
    r = TrialRecord.of(t)
    done = (trained or {}).get(str(r.number)) or {}
    return {
        "number": r.number,
        "state": r.state,
        "config": r.config,
        "hash": r.config_hash,
        "params": r.params,
        "macs": r.macs,
        "throughput": r.throughput,
        "measured": r.measured,
        "accuracy": r.accuracy,
        "proxy": r.proxy,
        "feasible": r.feasible if r.complete else None,
        "pareto": r.number in (pareto_numbers or set()),
        "note": r.note or r.fail_reason,
        "trained_top1": done.get("top1"),
        "trained_top1_ema": done.get("top1_ema"),
        **({"targets": target_figures(r, targets)} if targets else {}),
    }


def target_columns(records: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(column name, target index, key) of every target's figure in trial rows: ``img/s`` for
    a throughput target, ``p50 ms`` (and ``p90 ms`` when a trial has one) for latency; named
    by the target (``cpu/openvino p50 ms``) when there are several."""
    first: list[dict[str, Any]] = next((r["targets"] for r in records if r.get("targets")), [])
    out = []
    for i, t in enumerate(first):
        name = t["name"] + " " if len(first) > 1 else ""
        if t["metric"] != "latency":
            out.append((f"{name}img/s", i, "throughput"))
            continue
        out.append((f"{name}p50 ms", i, "p50_ms"))
        if any(len(r.get("targets") or ()) > i and r["targets"][i].get("p90_ms") is not None for r in records):
            out.append((f"{name}p90 ms", i, "p90_ms"))
    return out


def figure_cells(r: dict[str, Any], columns: list[tuple[str, int, str]]) -> dict[str, Any]:
    figures = r.get("targets") or []
    return {name: figures[i].get(key) if i < len(figures) else None for name, i, key in columns}
