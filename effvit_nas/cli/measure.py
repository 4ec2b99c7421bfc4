"""`bench`: throughput of configs on a device."""

from __future__ import annotations

import math

import click

from effvit_nas.arch.config import load_config, preset_name
from effvit_nas.cli.common import bench_options, bench_settings, print_json


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
    help="Anchored figures: time each CONFIG alternating with this one and print ratio x its figure stored for this device "
    "(measured 3 times the first time), so figures repeat although the machine's speed drifts; stored on that scale.",
)
@click.option("--reanchor", is_flag=True, help="With --anchor: measure the anchor's figure again (a new scale).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def bench(configs, device, storage, fresh, ray_address, reference, anchor, reanchor, as_json, **protocol) -> None:
    """Measure the throughput (images/s) of each CONFIG on a device.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file. The model is measured in
    deployment form (BN fused), by default traced, with a time-based warm-up and the median
    over timed iterations, in a Ray actor that holds the device exclusively. Results are kept
    in the store and reused unless --fresh.
    """
    from effvit_nas.measure.actor import measure_configs
    from effvit_nas.measure.store import MeasurementStore

    if reference is not None and anchor is not None:
        raise click.UsageError("--relative-to and --anchor exclude each other")
    if reanchor and anchor is None:
        raise click.UsageError("--reanchor needs --anchor CONFIG")
    cfgs = [load_config(c) for c in configs]
    settings = bench_settings(device, protocol)
    if reference is not None:
        _bench_ratios(cfgs, load_config(reference), device, settings, ray_address, as_json)
        return
    anchor_cfg = load_config(anchor) if anchor is not None else None  # a typo must not leave a new store behind
    store = MeasurementStore(storage)
    if anchor_cfg is not None:
        _bench_anchored(cfgs, anchor_cfg, device, settings, store, fresh, reanchor, ray_address, as_json)
        return

    def line(m) -> str:
        return (
            f"{m.throughput:10.1f} img/s  {_ci_text(m.ci_low, m.ci_high, '.1f')}  {m.windows} windows ({m.disturbed} disturbed)  "
            f"{m.iterations} iters  {'cached' if m.cached else f'{m.seconds:.1f} s'}"
        )

    results = measure_configs(
        cfgs, device, settings, store, fresh=fresh, ray_address=ray_address, on_result=_printer(device, settings, cfgs, line, as_json)
    )
    if as_json:
        _print_records(results)
    else:
        d = results[0].device
        click.echo(f"device: {d['name']} [{d['id']}], torch {d['torch']}; store: {store.url}")


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
    names = {c.short_hash(): preset_name(c) or c.short_hash() for c in cfgs}
    header = (
        f"bench on {device}: batch {s.batch}, {s.precision}, {s.threads} thread(s), backend {s.backend}, malloc {s.malloc}, "
        + (f"each model's warm-up {s.warmup_s / 2:g} s, " if paired else f"warm-up {s.warmup_s:g} s, ")
        + (f"timed alternately {s.pair_iters} iteration(s) at a time" if paired else f"timed in {s.window_s:g} s windows")
        + f" until ±{100 * s.ci_target:g} % (95 % interval) or {s.measure_s:g} s"
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


def _bench_anchored(cfgs, anchor, device: str, settings, store, fresh: bool, reanchor: bool, ray_address, as_json: bool) -> None:
    from datetime import UTC, datetime

    from effvit_nas.measure.anchor import how_measured, measure_anchored

    name = preset_name(anchor) or anchor.short_hash()

    def said(a) -> None:
        if as_json:
            return
        when = f"stored {datetime.fromtimestamp(a.finished, UTC):%Y-%m-%d %H:%M} UTC" if a.cached else "measured now"
        click.echo(f"anchor {name}: {a.throughput:.1f} img/s ({how_measured(a)}; {when}; --reanchor measures it again)")

    def line(m) -> str:
        return (
            f"{m.throughput:10.1f} img/s  {_ci_text(m.ci_low, m.ci_high, '.1f', 'pairs')}  "
            f"{m.iterations} pairs ({m.disturbed} disturbed)  {'cached' if m.cached else f'{m.seconds:.1f} s'}"
        )

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
    if as_json:
        _print_records(results)
