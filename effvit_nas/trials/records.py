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


def trial_record(t: FrozenTrial, pareto_numbers: set[int] | None = None, trained: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one trial as `show` prints it (JSON keys are the issue's, plus
    ``trained_top1`` once `effvit-nas train` trained it)."""
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
    }
