"""Successive halving of the train proxy, asynchronous and multi-objective.

A candidate's short training is evaluated at rung steps (``steps / eta**k``: with eta 3 and two
rungs, at 1/9 and 1/3 of its steps). At each rung it goes on only if its Pareto rank by
(top-1 at that rung, measured throughput) puts it in the best ``1/eta`` of the candidates that
reached the same rung before it; otherwise it stops there. Decisions use only earlier
candidates, so no candidate ever waits for another (ASHA's promotion rule, Li et al. 2020,
with Pareto rank in place of a single objective: Optuna's pruners are single-objective).

A stopped candidate's top-1 comes from fewer steps than a finished one's, so the two are never
compared as if equal: the search stores the steps behind every accuracy and keeps stopped
candidates out of the Pareto set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from effvit_nas.errors import SettingError

Point = tuple[float, float]  # (top-1 at a rung, throughput in images/s), both maximised


@dataclass(frozen=True)
class Halving:
    """Rungs at ``steps // eta**k`` for k = ``rungs`` .. 1 (default eta 3, 2 rungs)."""

    eta: int = 3
    rungs: int = 2

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise SettingError("Halving.eta", f"must be at least 2, got {self.eta}")
        if self.rungs < 1:
            raise SettingError("Halving.rungs", f"must be positive, got {self.rungs}")

    def rung_steps(self, steps: int) -> tuple[int, ...]:
        """The steps at which a run of ``steps`` updates is judged, ascending."""
        return tuple(sorted({s for k in range(self.rungs, 0, -1) if 1 <= (s := steps // self.eta**k) < steps}))


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """Non-dominated sorting: 1 for the points nobody dominates, 2 for those only rank-1 points
    dominate, ... (both coordinates maximised)."""
    ranks = [0] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        rank += 1
        front = {i for i in left if not any(_dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
    return ranks


def _dominates(a: Point, b: Point) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def promoted(point: Point, earlier: Sequence[Point], eta: int) -> bool:
    """Whether ``point`` goes on past a rung where ``earlier`` candidates were judged: fewer than
    ``eta`` earlier ones always go on (nothing to compare with yet); otherwise fewer than
    ``ceil(n / eta)`` of the n candidates may rank strictly better."""
    if len(earlier) < eta:
        return True
    ranks = pareto_ranks([*earlier, point])
    better = sum(r < ranks[-1] for r in ranks[:-1])
    return better < math.ceil(len(ranks) / eta)


def reporter(halving: Halving, steps: int, throughput: float, earlier: Mapping[int, Sequence[Point]], reached: MutableMapping[int, float]):
    """A short-training report hook (``report(step, top1) -> stop``) applying the rule at each
    rung of a ``steps``-step run; it writes each rung's top-1 into ``reached``."""
    rungs = set(halving.rung_steps(steps))

    def report(step: int, top1: float) -> bool:
        if step not in rungs:
            return False
        reached[step] = top1
        return not promoted((top1, throughput), earlier.get(step, ()), halving.eta)

    return report


@dataclass(frozen=True)
class Replayed:
    """One candidate of :func:`replay`: ``score`` orders candidates as the search would (the
    rungs passed first, then top-1 at the last one), ``steps`` is what its training cost."""

    score: float
    steps: int


def replay(candidates: Sequence[tuple[Mapping[int, float], float, float]], halving: Halving, steps: int) -> list[Replayed]:
    """Successive halving replayed, in order, on full runs: each candidate is ``(top-1 at each
    evaluated step, final top-1, throughput)``. Used to measure the rule's cost and fidelity
    on runs that were trained to the end."""
    rungs = halving.rung_steps(steps)
    earlier: dict[int, list[Point]] = {s: [] for s in rungs}
    out = []
    for history, final, throughput in candidates:
        result = Replayed(len(rungs) + final, steps)
        for i, s in enumerate(rungs):
            point = (history[s], throughput)
            go_on = promoted(point, earlier[s], halving.eta)
            earlier[s].append(point)
            if not go_on:
                result = Replayed(i + history[s], s)
                break
        out.append(result)
    return out
