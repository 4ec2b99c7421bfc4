"""Anchored figures: a config's throughput as its ratio to an anchor config, the two timed in
alternation (ratio mode), times the anchor's figure stored for this device and protocol.

Why: on a shared machine the whole machine's speed drifts for minutes at a time, without a
disturbed window to show it, so a single figure taken now and one taken an hour later differ by
more than their intervals (at 224 px single figures repeated with CV 2.6-5.2 % on a quiet
2-core VM, ratios to a model timed alongside with 0.7-1.1 %: results/throughput_precision_cpu.md).
The anchor's figure is measured once (the median of ``ANCHOR_RUNS`` measurements that agree)
and kept in the store, so every later figure is on its scale: anchored figures repeat as their ratios do,
and their absolute level is the anchor measurement's, which the output states with its date
(``bench --reanchor`` measures it again; figures on the old scale are then not reused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from typing import Any

from effvit_nas.arch.config import ArchConfig, preset_name
from effvit_nas.measure.actor import LazyWorker, check_local, check_on_worker, paired_key, paired_measurement
from effvit_nas.measure.devices import DeviceError
from effvit_nas.measure.settings import BenchSettings, Measurement
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.runtime import import_ray

# like a relative budget's preset: one cold measurement once came out 25 % low
ANCHOR_RUNS = 3
# runs after those while no ANCHOR_RUNS of them agree within ANCHOR_SPREAD ((max - min) /
# median): OpenVINO's batch-1 anchors once spread 13-21 % over 3 runs, and every figure on that
# anchor's scale carried the error (results/openvino_latency_check.md)
ANCHOR_MAX_RUNS = 7
ANCHOR_SPREAD = 0.03


def median_run(runs: Sequence[Measurement]) -> Measurement:
    """The measurement with the median throughput of ``runs`` (an odd number of them)."""
    return sorted(runs, key=lambda m: m.throughput)[len(runs) // 2]


def _spread(runs: Sequence[Measurement]) -> float:
    figures = [m.throughput for m in runs]
    return (max(figures) - min(figures)) / median_run(runs).throughput


def agreeing_runs(measure_once: Callable[[], Measurement]) -> tuple[Measurement, str]:
    """The anchor's figure and how it was found: ``measure_once()`` run ``ANCHOR_RUNS`` times,
    then again (up to ``ANCHOR_MAX_RUNS`` in all) until ``ANCHOR_RUNS`` of the runs agree within
    ``ANCHOR_SPREAD``; the median of those (of all runs, said so, if none agree)."""
    runs = [measure_once() for _ in range(ANCHOR_RUNS)]
    while True:
        ranked = sorted(runs, key=lambda m: m.throughput)
        groups = (ranked[i : i + ANCHOR_RUNS] for i in range(len(ranked) - ANCHOR_RUNS + 1))
        spread, closest = min(((_spread(g), g) for g in groups), key=lambda sg: sg[0])
        low, high = ranked[0].throughput, ranked[-1].throughput
        if spread <= ANCHOR_SPREAD:
            return median_run(closest), (
                f"median of {ANCHOR_RUNS} of {len(runs)} measurements agreeing within {100 * spread:.1f} %, all {low:.1f}-{high:.1f} img/s"
            )
        if len(runs) >= ANCHOR_MAX_RUNS:  # an odd number (3 + 4): median_run's middle run
            return median_run(runs), (
                f"median of {len(runs)} measurements, {low:.1f}-{high:.1f} img/s: no {ANCHOR_RUNS} of them agree within "
                f"{100 * ANCHOR_SPREAD:g} %, so figures on this scale are as uncertain (a busy machine?)"
            )
        runs.append(measure_once())


_PREFIX = "anchor: "  # how the anchor was measured, first in its stored note


def how_measured(anchor: Measurement) -> str:
    """How the stored anchor figure was measured (its runs' median and range), for output."""
    return anchor.note.split("; ")[0].removeprefix(_PREFIX)


def anchor_key(settings: BenchSettings) -> str:
    """Store key of an anchor's figure (its own, so `bench --fresh` on the anchor as a plain
    config does not move the scale of every anchored figure)."""
    return f"{settings.key()}-anchor"


def anchor_figure(
    anchor: ArchConfig, device_id: str, settings: BenchSettings, store: MeasurementStore, actor: Callable[[], Any], reanchor: bool = False
) -> Measurement:
    """``anchor``'s figure on this device, backend and protocol: stored, or measured by
    ``actor()`` until its runs agree (:func:`agreeing_runs`, how in its note) and stored;
    ``reanchor`` measures it again. `bench` and `search` share it, so an anchor is measured
    once per device, backend and protocol."""
    ray = import_ray()
    a = None if reanchor else store.get(anchor.short_hash(), device_id, anchor_key(settings))
    if a is not None:
        return a

    def once() -> Measurement:
        m = ray.get(actor().measure.remote(anchor.to_dict(), asdict(settings)))
        if m.device["id"] != device_id:  # stored under the actor's id, it would never be found again
            raise DeviceError(
                f"the device actor measures as device {m.device['id']} ({m.device.get('usable_cores')} usable cores) but this "
                f"process is {device_id}: start them with the same CPU affinity (taskset) and torch"
            )
        return m

    a, how = agreeing_runs(once)
    store.put(replace(a, note="; ".join(n for n in (_PREFIX + how, a.note) if n)), anchor_key(settings))
    # as read back: the scale in the figures' key must be the one later runs read (a database
    # may keep fewer digits than Python's float)
    stored = store.get(anchor.short_hash(), device_id, anchor_key(settings))
    if stored is None:
        raise RuntimeError(f"the anchor measurement just stored for {device_id} cannot be read back")
    return replace(stored, cached=False)


def measure_anchored(
    configs: Iterable[ArchConfig],
    anchor: ArchConfig,
    device: str,
    settings: BenchSettings,
    store: MeasurementStore,
    *,
    fresh: bool = False,
    reanchor: bool = False,
    ray_address: str | None = None,
    on_anchor: Callable[[Measurement], None] | None = None,
    on_result: Callable[[Measurement], None] | None = None,
    worker: Any = None,
) -> tuple[Measurement, list[Measurement]]:
    """The anchor's figure (stored, or measured until its runs agree and stored,
    :func:`agreeing_runs`; ``reanchor`` measures it again) and each config's anchored figure in
    images/s (stored under the anchor's scale, reused unless ``fresh``). As :func:`~effvit_nas.measure.actor.measure_configs`,
    a run whose figures are all stored starts no Ray; ``worker``: a device actor to reuse."""

    ray = import_ray()
    actor = (lambda: worker) if worker is not None else LazyWorker(device, settings, ray_address)
    local = ray_address is None and worker is None
    device_id = (check_local(device, settings) if local else check_on_worker(actor(), settings))["id"]
    a = anchor_figure(anchor, device_id, settings, store, actor, reanchor)
    if on_anchor:
        on_anchor(a)
    key, name = (
        paired_key(settings, anchor, a.throughput),
        f"anchor {preset_name(anchor) or anchor.short_hash()} at {a.throughput:.1f} img/s",
    )
    results = []
    for cfg in configs:
        m = None if fresh else store.get(cfg.short_hash(), device_id, key)
        if m is None:
            r = ray.get(actor().measure_ratio.remote(cfg.to_dict(), anchor.to_dict(), asdict(settings)))
            m = paired_measurement(cfg, r, a.throughput, name, a.p90_ms)
            store.put(m, key)
        results.append(m)
        if on_result:
            on_result(m)
    return a, results
