"""Budgets: absolute, their unit saying their metric (``10k-imgs/s`` throughput, ``5ms`` batch-1
latency), or relative to a hand-designed preset measured on the target device (``M0``,
``1.5xM0``, ``0.8xM2``), which always means "that many times as fast as the preset" in the
study's metric (``--metric``, default throughput): throughput x 1.5, or latency / 1.5.

Every budget is held as images/s (:attr:`Budget.images_per_s`), what feasibility is judged
against: a latency budget of L ms at batch 1 is 1000 / L images/s, and a candidate's figure is
1 / its median latency, so "at least the budget's images/s" is "at most the budget's latency"
and the search keeps one direction for both metrics.

An absolute budget with an anchor (``search --anchor M0``, by default ``M0``) takes that
preset's figure the same way, as the scale of the study's paired figures
(:class:`~effvit_nas.search.problem.SearchProblem`).

A relative budget is the preset rescaled to the space (its largest resolution, its classes),
its figure on this device, backend and protocol (the anchor figure `bench` keeps: measured
the first time until 3 runs agree, their median stored; ``--reanchor`` measures it again),
times the factor. It is resolved once, when the study is created, and stored with it:
resuming uses the stored figure, never a new measurement, so the study's feasibility never moves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import LazyWorker, check_local, check_on_worker
from effvit_nas.measure.anchor import anchor_figure, measure_anchored
from effvit_nas.measure.settings import BenchSettings, Measurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import parse_budget
from effvit_nas.search.study import stored_problem

if TYPE_CHECKING:
    from effvit_nas.arch.space import SearchSpace


# a preset's throughput times more than this is above any device (see problem.MAX_BUDGET)
MAX_FACTOR = 1000.0
_RELATIVE = re.compile(r"\s*(?:(\d+(?:\.\d+)?)\s*[xX*]\s*)?(M\d)\s*", re.IGNORECASE)
_LATENCY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|us|µs|s)\s*", re.IGNORECASE)
_TO_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
METRICS = ("throughput", "latency")


def parse_latency(text: str) -> float | None:
    """Milliseconds for ``5ms``, ``0.5 ms``, ``800us``, ``0.01s``; None for any other form.
    SettingError for a latency that is not positive."""
    m = _LATENCY.fullmatch(text)
    if not m:
        return None
    ms = float(m.group(1)) * _TO_MS[m.group(2).lower()]
    if ms <= 0:
        raise SettingError("SearchProblem.budget", f"{text!r} must be positive")
    return ms


def budget_metric(text: str, metric: str | None = None) -> str:
    """The metric budget ``text`` is in: its unit's (ms: latency; img/s: throughput), or for a
    relative budget ``metric`` (default throughput). SettingError when ``metric`` contradicts
    the unit, or the text is no budget at all."""
    if metric is not None and metric not in METRICS:
        raise SettingError("BenchSettings.metric", f"{metric!r} is unknown (choose from {', '.join(METRICS)})")
    if parse_relative(text) is not None:
        return metric or "throughput"
    unit = "latency" if parse_latency(text) is not None else "throughput"
    if unit == "throughput":
        parse_budget(text)  # a SettingError naming the forms when it is no budget either
    if metric is not None and metric != unit:
        raise SettingError("BenchSettings.metric", f"is {metric}, but the budget {text!r} is a {unit} (its unit says so)")
    return unit


@dataclass(frozen=True)
class Budget:
    """A resolved budget. ``images_per_s`` is what feasibility is judged against; for a
    relative budget ``spec`` says what it was resolved from (``"1.5xM0"``) and ``reference``
    is the preset's measured throughput (images/s)."""

    images_per_s: float
    spec: str | None = None
    reference: float | None = None
    anchor: str | None = None  # an absolute budget's anchor preset; ``reference`` is its figure

    @property
    def latency_ms(self) -> float:
        """The budget as a batch-1 latency (ms): what a latency study's ``images_per_s`` means."""
        return 1e3 / self.images_per_s


def parse_relative(text: str) -> tuple[float, str] | None:
    """``(factor, preset)`` for ``M0``, ``1.5xM0``, ``0.8x M2``; None for any other form.
    SettingError for an unknown preset or a factor that is not positive."""
    m = _RELATIVE.fullmatch(text)
    if not m:
        return None
    factor, name = float(m.group(1) or 1.0), m.group(2).upper()
    if name not in PRESETS:
        raise SettingError("SearchProblem.budget", f"{text!r} names no preset (choose from {', '.join(PRESETS)})")
    if not 0 < factor <= MAX_FACTOR:
        raise SettingError("SearchProblem.budget", f"{text[:40]!r}: the factor must be positive and at most {MAX_FACTOR:g}")
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
        ms = parse_latency(text)
        images_per_s = 1e3 / ms if ms is not None else parse_budget(text)  # batch 1: one image per latency
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


def default_study_name(device: str, text: str, metric: str = "throughput") -> str:
    """``effvit-<device>-<budget>``: the budget as images/s or ms, or its preset form (with
    ``-latency`` for a relative latency budget)."""
    relative = parse_relative(text)
    ms = None if relative else parse_latency(text)
    if relative:
        budget = _canonical(*relative) + ("-latency" if metric == "latency" else "")
    else:
        budget = f"{ms:g}ms" if ms is not None else f"{parse_budget(text):g}"
    return f"effvit-{device.lower()}-{budget}"


def default_targets_name(specs: list[str]) -> str:
    """``effvit-<spec1>+<spec2>...``, each character outside ``[A-Za-z0-9._+-]`` as ``_``: the
    default name of a study of several targets (CONTRACT.md item 4)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "effvit-" + "+".join(specs))


def study_budget(
    text: str,
    space: SearchSpace,
    device: str,
    bench: BenchSettings,
    options: RunOptions,
    worker: Callable[[], Any] | None = None,
    anchor: str | None = None,
    reanchor: bool = False,
    target: int = 0,
    scale: str | None = None,
) -> Budget:
    """The budget ``text`` (with ``anchor``, for an absolute one) means for the study
    ``options`` name: its stored figure when the study exists with the same budget, else
    resolved now from the preset's figure on this device, backend and protocol: the anchor
    figure `bench` keeps too (:func:`~effvit_nas.measure.anchor.anchor_figure`, measured
    until its runs agree the first time; ``reanchor`` measures it again).
    ``worker``: returns the device actor to use (default: one started for this call).
    ``target``: which of a study's targets the budget is (the first is the study's own).
    ``scale``: a preset whose scale a relative budget's preset is put on: its figure anchored
    to that preset (as `bench --anchor`) instead of its own anchor figure. Studies that share
    measurements (the predicted strategy's budgets and its calibration) need one scale: two
    presets' own anchor figures, each measured alone, can disagree with their ratio by a third
    on a noisy machine (results/specialise_cpu_budgets.md)."""

    stored = _stored_budget(stored_problem(options), target)

    def measure(config: ArchConfig) -> Measurement:
        store = MeasurementStore(options.storage)
        actor = worker or LazyWorker(device, bench, options.ray_address)  # one actor for all runs
        on = reference_config(scale, config.img_size, config.num_classes) if scale else None
        if on is not None and on.short_hash() != config.short_hash():  # it checks the device itself
            return measure_anchored([config], on, device, bench, store, reanchor=reanchor, worker=actor())[1][0]
        local = options.ray_address is None and worker is None
        device_id = (check_local(device, bench) if local else check_on_worker(actor(), bench))["id"]
        # the preset's stored figure on this device, backend and protocol (bench's anchor too)
        return anchor_figure(config, device_id, bench, store, actor, reanchor)

    budget = resolve_budget(text, max(space.img_sizes), space.num_classes, measure, stored, anchor)
    return budget if stored is not None else adopt_stored(budget, options, target)


def adopt_stored(budget: Budget, options: RunOptions, target: int = 0) -> Budget:
    """``budget``, or the figure a study of the same relative budget got meanwhile: drivers of
    one command started together each measure the preset while no study exists yet; the first
    to create the study stores its figure, and the others take it instead of being refused
    for a budget a few img/s apart (a study compares every trial with one figure)."""

    if budget.reference is None:
        return budget
    stored = _stored_budget(stored_problem(options), target)
    if stored is not None and (stored.spec, stored.anchor) == (budget.spec, budget.anchor):
        return stored
    return budget


def _stored_budget(problem: dict[str, Any] | None, target: int = 0) -> Budget | None:
    """The budget a study's stored problem holds (for its ``target``-th target) if it rests on
    a measured preset (relative, or absolute with an anchor)."""
    if problem and target:
        targets = problem.get("targets") or []
        problem = targets[target] if target < len(targets) else None
    if not problem or not (problem.get("budget_spec") or problem.get("anchor")):
        return None
    return Budget(problem["budget"], problem.get("budget_spec"), problem.get("budget_reference"), problem.get("anchor"))
