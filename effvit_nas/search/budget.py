"""Throughput budgets: absolute (``10k-imgs/s``) or relative to a hand-designed preset measured
on the target device (``M0``, ``1.5xM0``, ``0.8xM2``).

An absolute budget with an anchor (``search --anchor M0``) measures that preset the same way,
as the scale of the study's paired figures (:class:`~effvit_nas.search.problem.SearchProblem`).

A relative budget is the preset rescaled to the space (its largest resolution, its classes),
measured ``REFERENCE_RUNS`` times with the study's protocol in the device actor (the median
kept; the newest figure stays in the measurement store), times the factor. It is resolved once, when the study is created, and stored with it: resuming
uses the stored figure, never a new measurement, so the study's feasibility never moves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import LazyWorker, measure_configs
from effvit_nas.measure.anchor import median_run
from effvit_nas.measure.settings import BenchSettings, Measurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import parse_budget
from effvit_nas.search.study import stored_problem

if TYPE_CHECKING:
    from effvit_nas.arch.space import SearchSpace


# The preset behind a relative budget is measured this many times and the median kept: the
# whole study's feasibility rests on this one figure, and a single measurement in a fresh
# device actor once came out 25 % under the preset's median in later interleaved rounds.
REFERENCE_RUNS = 3

_RELATIVE = re.compile(r"\s*(?:(\d+(?:\.\d+)?)\s*[xX*]\s*)?(M\d)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A resolved budget. ``images_per_s`` is what feasibility is judged against; for a
    relative budget ``spec`` says what it was resolved from (``"1.5xM0"``) and ``reference``
    is the preset's measured throughput (images/s)."""

    images_per_s: float
    spec: str | None = None
    reference: float | None = None
    anchor: str | None = None  # an absolute budget's anchor preset; ``reference`` is its figure


def parse_relative(text: str) -> tuple[float, str] | None:
    """``(factor, preset)`` for ``M0``, ``1.5xM0``, ``0.8x M2``; None for any other form.
    SettingError for an unknown preset or a factor that is not positive."""
    m = _RELATIVE.fullmatch(text)
    if not m:
        return None
    factor, name = float(m.group(1) or 1.0), m.group(2).upper()
    if name not in PRESETS:
        raise SettingError("SearchProblem.budget", f"{text!r} names no preset (choose from {', '.join(PRESETS)})")
    if factor <= 0:
        raise SettingError("SearchProblem.budget", f"{text!r}: the factor must be positive")
    return factor, name


def reference_config(preset: str, img_size: int, num_classes: int) -> ArchConfig:
    """The preset as the space would build it: at the space's resolution and class count."""
    return PRESETS[preset].replace(img_size=img_size, num_classes=num_classes)


def resolve_budget(
    text: str,
    img_size: int,
    num_classes: int,
    measure: Callable[[ArchConfig], Measurement],
    stored: Budget | None = None,
    anchor: str | None = None,
) -> Budget:
    """The budget ``text`` means, with ``anchor``'s figure for an absolute one. ``stored``: the
    budget a study already holds for the same text (and anchor), which wins over measuring
    again. ``measure`` is only called for a preset without a stored figure."""
    relative = parse_relative(text)
    if relative is not None and anchor is not None:  # before the preset is measured for nothing
        raise SettingError("SearchProblem.anchor", f"is for an absolute budget; {text}'s preset is its anchor (use --paired)")
    if relative is None:
        images_per_s = parse_budget(text)
        if anchor is None:
            return Budget(images_per_s)
        if anchor not in PRESETS:
            raise SettingError("SearchProblem.anchor", f"{anchor!r} names no preset (choose from {', '.join(PRESETS)})")
        if stored is not None and stored.anchor == anchor:  # the anchor's figure, whatever the budget now asked
            return Budget(images_per_s, reference=stored.reference, anchor=anchor)
        return Budget(images_per_s, reference=measure(reference_config(anchor, img_size, num_classes)).throughput, anchor=anchor)
    if stored is not None and stored.spec == _canonical(*relative):
        return stored
    factor, name = relative
    m = measure(reference_config(name, img_size, num_classes))
    return Budget(factor * m.throughput, _canonical(factor, name), m.throughput)


def _canonical(factor: float, name: str) -> str:
    return f"{factor:g}x{name}"


def default_study_name(device: str, text: str) -> str:
    """``effvit-<device>-<budget>``: the budget as images/s, or its preset form."""
    relative = parse_relative(text)
    budget = _canonical(*relative) if relative else f"{parse_budget(text):g}"
    return f"effvit-{device.lower()}-{budget}"


def study_budget(
    text: str,
    space: SearchSpace,
    device: str,
    bench: BenchSettings,
    options: RunOptions,
    worker: Callable[[], Any] | None = None,
    anchor: str | None = None,
) -> Budget:
    """The budget ``text`` (with ``anchor``, for an absolute one) means for the study
    ``options`` name: its stored figure when the study exists with the same budget, else
    resolved now (a preset is measured in the device's actor, through the measurement store).
    ``worker``: returns the device actor to use (default: one started for this call)."""

    stored = _stored_budget(stored_problem(options))

    def measure(config: ArchConfig) -> Measurement:
        store = MeasurementStore(options.storage)
        actor = (worker or LazyWorker(device, bench, options.ray_address))()  # one actor for all runs
        runs = [
            measure_configs([config], device, bench, store, fresh=i > 0, ray_address=options.ray_address, worker=actor)[0]
            for i in range(REFERENCE_RUNS)
        ]
        return median_run(runs)

    budget = resolve_budget(text, max(space.img_sizes), space.num_classes, measure, stored, anchor)
    return budget if stored is not None else adopt_stored(budget, options)


def adopt_stored(budget: Budget, options: RunOptions) -> Budget:
    """``budget``, or the figure a study of the same relative budget got meanwhile: drivers of
    one command started together each measure the preset while no study exists yet; the first
    to create the study stores its figure, and the others take it instead of being refused
    for a budget a few img/s apart (a study compares every trial with one figure)."""

    if budget.reference is None:
        return budget
    stored = _stored_budget(stored_problem(options))
    same = stored is not None and (stored.spec, stored.anchor) == (budget.spec, budget.anchor)
    return stored if same else budget


def _stored_budget(problem: dict[str, Any] | None) -> Budget | None:
    """The budget a study's stored problem holds if it rests on a measured preset (relative,
    or absolute with an anchor)."""
    if not problem or not (problem.get("budget_spec") or problem.get("anchor")):
        return None
    return Budget(problem["budget"], problem.get("budget_spec"), problem.get("budget_reference"), problem.get("anchor"))
