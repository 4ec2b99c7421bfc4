"""The Pareto set of a study: feasible, non-dominated (proxy accuracy, throughput) trials, or
with several targets (proxy accuracy, every target's figure).

Every objective is maximised (a latency target's figure is 1000 / p50 ms). A trial is feasible
when every constraint Optuna stores for it is <= 0 (the search stores ``(budget - figure) /
budget`` per target). Candidates the search skipped as predicted-infeasible carry a predicted
figure, never a measured one, and never enter the set (nor does one not measured on every
target); nor do candidates stopped at a successive-halving rung (their accuracy comes from fewer
training steps than the others').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from effvit_nas.trials.records import TrialRecord, is_feasible

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


T = TypeVar("T")

__all__ = ["front_points", "hypervolume_2d", "is_feasible", "non_dominated", "on_front", "pareto_trials"]


def non_dominated(points: Sequence[Sequence[float]]) -> set[tuple[float, ...]]:
    """The points no other point dominates (every coordinate maximised: at least as good in
    all, better in one), each once."""
    pts = {tuple(map(float, p)) for p in points}
    return {p for p in pts if not any(q != p and all(a >= b for a, b in zip(q, p, strict=True)) for q in pts)}


def front_points(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The non-dominated points of ``points`` (both coordinates maximised), by first coordinate
    descending; duplicates kept once."""
    pts = sorted({(float(a), float(b)) for a, b in points}, key=lambda p: (-p[0], -p[1]))
    front: list[tuple[float, float]] = []
    for a, b in pts:
        if not front or b > front[-1][1]:
            front.append((a, b))
    return front


def on_front(items: Sequence[T], key: Callable[[T], tuple[float, float]]) -> list[T]:
    """The items whose ``key`` point lies on the front of all their points (both maximised),
    in their order; items sharing a front point are all kept."""
    front = set(front_points([key(i) for i in items]))
    return [i for i in items if tuple(float(v) for v in key(i)) in front]


def hypervolume_2d(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded below by ``ref`` (both coordinates maximised).
    Points not strictly better than ``ref`` in both coordinates add nothing."""
    pts = [(a, b) for a, b in front_points(points) if a > ref[0] and b > ref[1]]
    area, prev_b = 0.0, ref[1]
    for a, b in sorted(pts, key=lambda p: -p[0]):  # accuracy descending, throughput ascending
        if b > prev_b:
            area += (a - ref[0]) * (b - prev_b)
            prev_b = b
    return area


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible, complete, measured, non-dominated trials (Optuna ``FrozenTrial``), each
    architecture once (its first trial), best accuracy first."""
    import optuna  # lazy: Optuna costs a second to import

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    first: dict[str, Any] = {}
    for t in sorted(complete, key=lambda t: t.number):
        r = TrialRecord.of(t)
        if r.feasible and r.measured_all and not r.stopped:
            first.setdefault(r.key(), t)
    front = non_dominated([tuple(t.values) for t in first.values()])
    return sorted((t for t in first.values() if tuple(map(float, t.values)) in front), key=lambda t: -t.values[0])
