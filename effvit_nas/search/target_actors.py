"""How each target of a study is measured on Ray: its device actors, its protocol, its store key.

A study's first target owns the measurement pool (:mod:`effvit_nas.measure.pool`) the search
schedules on. Every other target on the same device (and thread count) is timed by the same
actors, one call after the other (an actor with ``max_concurrency=1`` runs its calls in order,
so timings never overlap on a device); a target on another device gets that device's own pool,
placed by :func:`~effvit_nas.measure.pool.start_pool` on the nodes holding it, shared by every
target on that device.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import check_on_worker, paired_key, paired_measurement
from effvit_nas.measure.pool import Pool, start_pool
from effvit_nas.measure.settings import Measurement
from effvit_nas.search.budget import parse_relative, reference_config
from effvit_nas.search.problem import TargetProblem


class TargetActors:
    """One target's actors (``handles``, one per pool member of the first target when they are
    shared, else its device's pool), the fingerprint its figures are stored under and the
    preset its candidates are paired with (None: timed alone)."""

    def __init__(self, target: TargetProblem, pool: Pool, shared: bool, reference: ArchConfig | None):
        self.target, self.pool, self.shared, self.reference = target, pool, shared, reference
        self.handles = [m.handle for m in pool.members]  # of its own pool (not shared)
        self.fp_id: str = pool.members[0].fingerprint["id"]  # a pool has one fingerprint
        self._next = 0  # round robin over a pool of its own

    def store_key(self) -> str:
        bench = self.target.bench
        return paired_key(bench, self.reference, self._reference_figure()) if self.reference is not None else bench.key()

    def _reference_figure(self) -> float:
        if self.target.budget_reference is None:  # TargetProblem refuses paired=True without it
            raise SettingError("SearchProblem.budget_reference", "is needed to pair candidates (paired=True)")
        return self.target.budget_reference

    def submit(self, first: Any, config: ArchConfig) -> Any:
        """Start timing ``config`` on this target: on ``first`` (the first target's actor the
        candidate holds) when shared, else on its own pool's next actor (whose calls queue
        behind the ones it runs)."""
        handle, settings = first, asdict(self.target.bench)
        if not self.shared:
            handle, self._next = self.handles[self._next % len(self.handles)], self._next + 1
        if self.reference is not None:
            return handle.measure_ratio.remote(config.to_dict(), self.reference.to_dict(), settings)
        return handle.measure.remote(config.to_dict(), settings)

    def figure(self, config: ArchConfig, result: Any) -> Measurement:
        """An actor's result as this target's figure (a paired ratio times the preset's figure)."""
        if self.reference is None:
            return result
        t = self.target
        reference = f"anchor {t.anchor}" if t.anchor else "the budget's preset"
        return paired_measurement(config, result, self._reference_figure(), reference)


def target_actors(targets: tuple[TargetProblem, ...], first: Pool, space: Any, ray_address: str | None) -> list[TargetActors]:
    """Every target's actors: the first target's pool for targets on its device and thread
    count (each checked to run its backend there), one pool per other device."""
    pools: dict[tuple[str, int], Pool] = {(targets[0].device, targets[0].bench.threads): first}
    out = []
    for t in targets:
        where = (t.device, t.bench.threads)
        shared = where == (targets[0].device, targets[0].bench.threads)
        if where not in pools:
            pools[where] = start_pool(t.device, t.bench, ray_address)
        pool = pools[where]
        for m in pool.members:  # a backend the device cannot run is refused before any trial
            check_on_worker(m.handle, t.bench)
        out.append(TargetActors(t, pool, shared, paired_reference(t, space) if t.paired else None))
    return out


def paired_reference(target: TargetProblem, space: Any) -> ArchConfig:
    """The preset ``target``'s candidates are paired with (its anchor, or its budget's preset)
    as its budget measured it: at the space's resolution and classes."""
    relative = parse_relative(target.budget_spec) if target.budget_spec else None
    name = target.anchor or (relative[1] if relative else None)
    if name is None:  # TargetProblem refuses paired=True without either
        raise SettingError("SearchProblem.paired", "needs a budget relative to a preset or an anchor")
    return reference_config(name, max(space.img_sizes), space.num_classes)
