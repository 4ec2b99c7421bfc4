"""`bench`: throughput or latency of configs on a device, anchored by default."""

from __future__ import annotations

import math

import click

from effvit_nas.arch.config import ArchConfig, load_config, preset_name
from effvit_nas.cli.common import bench_options, bench_settings, device_kind, print_json
from effvit_nas.measure.devices import parse_device
from effvit_nas.measure.settings import DEFAULT_ANCHOR
from effvit_nas.measure.windows import GAP_QUANTILE


@click.command("bench")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option(
    "--device", "device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, auto, or a GPU name (v100, a100, h100, ...)."
)
@bench_options
@click.option(
    "--storage", default=None, help="SQLAlchemy URL of the measurement store [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db]."
)
@click.option("--fresh", is_flag=True, help="Measure again even if the store has this measurement (replaces it).")
@click.option("--ray-address", default=None, help="Join this Ray cluster (e.g. auto, ray://head:10001) instead of a local Ray.")
@click.option(
    "--relative-to",
    "reference",
    default=None,
    metavar="CONFIG",
    help="Ratio mode: time each CONFIG in windows alternating with this one and print its throughput relative to it (not stored).",
)
@click.option(
    "--anchor",
    default=None,
    metavar="CONFIG",
    help=f"Anchored figures (the default, anchor {DEFAULT_ANCHOR} at each CONFIG's resolution): time each CONFIG alternating "
    "with this one and print ratio x its figure stored for this device, backend and protocol (measured 3 times the first "
    "time), so figures repeat although the machine's speed drifts; stored on that scale.",
)
@click.option("--reanchor", is_flag=True, help="Measure the anchor's figure again (a new scale).")
@click.option("--no-anchor", is_flag=True, help="A plain single figure per CONFIG, timed alone (noisier on a drifting machine).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def bench(configs, device, storage, fresh, ray_address, reference, anchor, reanchor, no_anchor, as_json, **protocol) -> None:
    """Measure the throughput (images/s) or latency (ms at batch 1) of each CONFIG on a device.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file. The model is measured in
    deployment form (BN fused), by default traced, with a time-based warm-up and timed
    windows, in a Ray actor that holds the device exclusively. By default each figure is
    anchored: its ratio to a preset timed alongside, times that preset's stored figure.
    Results are kept in the store and reused unless --fresh.
    """
    from effvit_nas.measure.actor import measure_configs
    from effvit_nas.measure.backends import check as check_backend
    from effvit_nas.measure.store import MeasurementStore, default_storage, require_persistent

    if no_anchor and (anchor is not None or reanchor):
        raise click.UsageError("--no-anchor excludes --anchor and --reanchor")
    if reference is not None and (anchor is not None or reanchor):
        raise click.UsageError("--relative-to and --anchor exclude each other")
    cfgs = [load_config(c) for c in configs]
    settings = bench_settings(device, protocol)
    if reference is not None:
        _bench_ratios(cfgs, load_config(reference), device, settings, ray_address, as_json)
        return
    anchor_cfg = load_config(anchor) if anchor is not None else None  # a typo must not leave a new store behind
    if ray_address is None:  # a missing runtime is refused before a store is created (a cluster's workers may have it)
        check_backend(settings, device_kind(parse_device(device)))
    require_persistent(storage or default_storage())
    store = MeasurementStore(storage)
    store.check_writable()  # a read-only database fails now, not after minutes of measuring
    if not no_anchor:
        anchored = [
            m
            for anchor_at, group in _anchor_groups(cfgs, anchor_cfg)
            for m in _bench_anchored(group, anchor_at, device, settings, store, fresh, reanchor, ray_address, as_json)
        ]
        if as_json:
            _print_records(anchored)
        return

    def line(m) -> str:
        return f"{_figure(m)}  {m.windows} windows ({m.disturbed} disturbed)  {m.iterations} iters  {'cached' if m.cached else f'{m.seconds:.1f} s'}"

    results = measure_configs(
        cfgs, device, settings, store, fresh=fresh, ray_address=ray_address, on_result=_printer(device, settings, cfgs, line, as_json)
    )
    if as_json:
        _print_records(results)
    else:
        d = results[0].device
        click.echo(f"device: {d['name']} [{d['id']}], torch {d['torch']}; store: {store.url}")


def _anchor_groups(cfgs: list[ArchConfig], anchor: ArchConfig | None) -> list[tuple[ArchConfig, list[ArchConfig]]]:
    """(anchor, configs) pairs: ``anchor`` for all configs when given, else the default preset
    at each config's resolution and class count (an anchor alike in input size pairs best)."""
    if anchor is not None:
        return [(anchor, cfgs)]
    from effvit_nas.arch.config import PRESETS

    groups: dict[tuple[int, int], list[ArchConfig]] = {}
    for c in cfgs:
        groups.setdefault((c.img_size, c.num_classes), []).append(c)
    return [(PRESETS[DEFAULT_ANCHOR].replace(img_size=size, num_classes=k), group) for (size, k), group in groups.items()]


def _figure(m, unit: str = "windows") -> str:
    """The figure with its interval: img/s, or for the latency metric p50 and p90 in ms."""
    if m.settings.get("metric") != "latency":
        return f"{m.throughput:10.1f} img/s  {_ci_text(m.ci_low, m.ci_high, '.1f', unit)}"
    p50 = f"p50 {m.p50_ms:8.3f} ms  {_ci_text(1e3 * m.batch / m.ci_high, 1e3 * m.batch / m.ci_low, '.3f', unit)}"
    return f"{p50}  p90 {m.p90_ms:8.3f} ms  {_ci_text(m.p90_low, m.p90_high, '.3f', unit)}"


def _ci_text(lo: float, hi: float, fmt: str, unit: str = "windows") -> str:
    if math.isnan(lo):
        return f"95% n/a (under 6 {unit})"
    return f"95% {lo:{fmt}}-{hi:{fmt}}"


def _print_records(results: list) -> None:
    records = [r.to_dict() for r in results]
    print_json(records[0] if len(records) == 1 else records)


def _printer(device: str, s, cfgs, line, as_json: bool, paired: bool = False):
    """Print each result as its config's name, ``line(result)`` and its note, the protocol
    line before the first (after validation, so bad input prints nothing but its error);
    nothing with --json."""
    from effvit_nas.measure.backends import get

    names = {c.short_hash(): preset_name(c) or c.short_hash() for c in cfgs}
    runtime = get(s.backend).describe(s, device_kind(parse_device(device)) == "cuda")
    header = (
        f"bench {s.metric} on {device}: batch {s.batch}, {s.precision}, {s.threads} thread(s), backend {s.backend} ({runtime}), "
        f"malloc {s.malloc}, pages {s.pages}, "
        + (f"each model's warm-up {s.warmup_s / 2:g} s, " if paired else f"warm-up {s.warmup_s:g} s, ")
        + (
            f"timed in alternating turns (each {1e3 * s.pair_settle_s:g} ms untimed, then as many iterations timed, {s.pair_iters} at least)"
            if paired
            else f"timed in {s.window_s:g} s windows"
        )
        + (f" until ±{100 * s.ci_target:g} % (95 % interval) or {s.measure_s:g} s" if s.ci_target > 0 else f" for {s.measure_s:g} s")
        + (
            f", figure: the anchor's time plus the gap between the two models' fastest {100 * GAP_QUANTILE:g} % of iterations"
            if paired and s.pair_estimator == "gap"
            else ""
        )
    )
    printed: list[bool] = []

    def on_result(m) -> None:
        if as_json:
            return
        if not printed:
            click.echo(header)
            printed.append(True)
        click.echo(f"{names[m.config_hash]:>12}  {line(m)}" + (f"  ({m.note})" if m.note else ""))

    return on_result


def _bench_ratios(cfgs, reference, device: str, settings, ray_address, as_json: bool) -> None:
    from effvit_nas.measure.actor import measure_ratios

    ref = preset_name(reference) or reference.short_hash()

    def line(r) -> str:
        return (
            f"{r.ratio:.3f}x {ref}  {_ci_text(r.ci_low, r.ci_high, '.3f', 'pairs')}  ({r.throughput:.1f} vs {r.reference_throughput:.1f} img/s in this run)  "
            f"{r.pairs} pairs ({r.disturbed} disturbed)  {r.seconds:.1f} s"
        )

    results = measure_ratios(
        cfgs, reference, device, settings, ray_address=ray_address, on_result=_printer(device, settings, cfgs, line, as_json, paired=True)
    )
    if as_json:
        _print_records(results)


def _bench_anchored(cfgs, anchor, device: str, settings, store, fresh: bool, reanchor: bool, ray_address, as_json: bool) -> list:
    from datetime import UTC, datetime

    from effvit_nas.measure.anchor import how_measured, measure_anchored
    from effvit_nas.measure.backends import get

    name = preset_name(anchor) or anchor.short_hash()
    caveat = get(settings.backend).paired_caveat(settings)
    if caveat:
        click.echo(f"warning: {caveat}", err=True)

    def said(a) -> None:
        if as_json:
            return
        when = f"stored {datetime.fromtimestamp(a.finished, UTC):%Y-%m-%d %H:%M} UTC" if a.cached else "measured now"
        figure = f"p50 {a.p50_ms:.3f} ms, p90 {a.p90_ms:.3f} ms" if a.settings.get("metric") == "latency" else f"{a.throughput:.1f} img/s"
        click.echo(f"anchor {name}: {figure} ({how_measured(a)}; {when}; --reanchor measures it again, --no-anchor times alone)")

    def line(m) -> str:
        return f"{_figure(m, 'pairs')}  {m.iterations} pairs ({m.disturbed} disturbed)  {'cached' if m.cached else f'{m.seconds:.1f} s'}"

    _, results = measure_anchored(
        cfgs,
        anchor,
        device,
        settings,
        store,
        fresh=fresh,
        reanchor=reanchor,
        ray_address=ray_address,
        on_anchor=said,
        on_result=_printer(device, settings, cfgs, line, as_json, paired=True),
    )
    return results
