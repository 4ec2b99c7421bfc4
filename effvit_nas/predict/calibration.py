"""The calibration set of a target: which architectures `profile` measures, measuring them
through the measurement engine (stored figures of the same device and protocol are reused),
and the measurements' own repeat spread, the ceiling any predictor is judged against.

The set is the presets M0..M5 rebuilt at the space's resolution and classes (what budgets are
stated relative to) plus a space-filling sample of the space: a scrambled Halton sequence over
the knobs' choice indices (low discrepancy: every knob's choices and their pairs are covered
evenly at any size, which i.i.d. draws of 40 points do not), mapped through the space's own
params -> config construction, duplicates dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import SettingError
from effvit_nas.measure.actor import measure_configs
from effvit_nas.measure.anchor import measure_anchored
from effvit_nas.measure.settings import BenchSettings, Measurement
from effvit_nas.measure.store import MeasurementStore


def preset_configs(space: SearchSpace) -> dict[str, ArchConfig]:
    """M0..M5 as the space would build them: at its (largest) resolution and its classes."""
    size = max(space.img_sizes)
    return {name: p.replace(img_size=size, num_classes=space.num_classes) for name, p in PRESETS.items()}


def space_sample(space: SearchSpace, n: int, seed: int) -> list[ArchConfig]:
    """``n`` distinct configs from a scrambled Halton sequence over the space's knobs (fewer
    when the space has fewer distinct architectures within ``8 n`` points)."""
    from scipy.stats import qmc  # lazy: scipy.stats costs a second or more to import

    if n < 0:
        raise SettingError("calibration_set.archs", f"must be >= 0, got {n}")
    knobs = space.knobs()
    points = qmc.Halton(d=len(knobs), scramble=True, seed=seed).random(8 * n) if n else np.empty((0, len(knobs)))
    out: dict[str, ArchConfig] = {}
    for u in points:
        params = {k.name: k.choices[min(int(x * len(k.choices)), len(k.choices) - 1)] for k, x in zip(knobs, u, strict=True)}
        cfg = space.config_from_params(params)
        out.setdefault(cfg.short_hash(), cfg)
        if len(out) == n:
            break
    return list(out.values())


def calibration_set(space: SearchSpace, n: int, seed: int) -> list[tuple[str, ArchConfig]]:
    """(label, config): the presets, then ``n`` space samples not equal to one of them."""
    presets = preset_configs(space)
    seen = {c.short_hash() for c in presets.values()}
    sample = [c for c in space_sample(space, n + len(presets), seed) if c.short_hash() not in seen][:n]
    return list(presets.items()) + [(c.short_hash(), c) for c in sample]


@dataclass(frozen=True)
class Calibration:
    """What `profile` measured: one figure per calibration architecture (img/s), how many were
    measured now and how many reused, the wall-clock seconds it took, and repeat pairs."""

    labels: tuple[str, ...]
    configs: tuple[ArchConfig, ...]
    throughput: np.ndarray
    measured_now: int
    reused: int
    seconds: float
    device: dict
    anchor: str | None
    repeats: tuple[tuple[str, float, float], ...]  # (label, first figure, repeated figure)


Measure = Callable[[list[ArchConfig], bool], list[Measurement]]


def engine_measure(
    device: str,
    settings: BenchSettings,
    store: MeasurementStore,
    anchor: ArchConfig | None,
    on_result: Callable[[Measurement], None] | None = None,
) -> Measure:
    """``measure(configs, fresh)`` through the engine's public entry points: anchored figures
    (`bench --anchor`) when ``anchor`` is given, plain ones (`bench`) otherwise; ``on_result``
    sees each figure as it comes."""

    def measure(configs: list[ArchConfig], fresh: bool) -> list[Measurement]:
        if anchor is None:
            return measure_configs(configs, device, settings, store, fresh=fresh, on_result=on_result)
        return measure_anchored(configs, anchor, device, settings, store, fresh=fresh, on_result=on_result)[1]

    return measure


def calibrate(items: list[tuple[str, ArchConfig]], measure: Measure, repeats: int, anchor: str | None) -> Calibration:
    """Measure every item (stored figures reused), then ``repeats`` space samples again afresh
    (their first figure and the repeat give the noise ceiling; the repeat is what stays stored)."""
    start = time.perf_counter()
    ms = measure([c for _, c in items], False)
    again = [i for i in range(len(items)) if items[i][0] not in PRESETS][:repeats]
    rep = measure([items[i][1] for i in again], True) if again else []
    return Calibration(
        labels=tuple(label for label, _ in items),
        configs=tuple(c for _, c in items),
        throughput=np.array([m.throughput for m in ms]),
        measured_now=sum(not m.cached for m in ms) + len(rep),
        reused=sum(m.cached for m in ms),
        seconds=time.perf_counter() - start,
        device=ms[0].device,
        anchor=anchor,
        repeats=tuple((items[i][0], ms[i].throughput, r.throughput) for i, r in zip(again, rep, strict=True)),
    )


@dataclass(frozen=True)
class NoiseCeiling:
    """What a perfect predictor would score against single measurements: ``sd`` is one
    measurement's relative spread (log scale) from ``pairs`` repeats; the rest as HeldOut's."""

    pairs: int
    sd: float
    within_5: float
    within_10: float
    spearman: float


def noise_ceiling(repeats: tuple[tuple[str, float, float], ...], throughput: np.ndarray, seed: int = 0) -> NoiseCeiling | None:
    """Simulated: the measured figures as the truth, each measurement off by a normal log error
    of the repeats' spread (sd = RMS of log(first / repeat) / sqrt 2)."""
    from scipy.stats import spearmanr  # lazy: scipy.stats costs a second or more to import

    if not repeats:
        return None
    d = np.array([math.log(a / b) for _, a, b in repeats])
    sd = float(np.sqrt(np.mean(d**2) / 2))
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, sd, size=(400, len(throughput)))
    err = np.abs(np.exp(-e) - 1)
    rho = [spearmanr(throughput, throughput * np.exp(row)).statistic for row in e[:100]] if sd > 0 else [1.0]
    return NoiseCeiling(len(repeats), sd, float(np.mean(err <= 0.05)), float(np.mean(err <= 0.10)), float(np.mean(rho)))
