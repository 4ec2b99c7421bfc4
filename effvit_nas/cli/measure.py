"""`bench`: throughput of configs on a device."""

from __future__ import annotations

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def bench(configs, device, storage, fresh, ray_address, as_json, **protocol) -> None:
    """Measure the throughput (images/s) of each CONFIG on a device.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file. The model is measured in
    deployment form (BN fused), by default traced, with a time-based warm-up and the median
    over timed iterations, in a Ray actor that holds the device exclusively. Results are kept
    in the store and reused unless --fresh.
    """
    from effvit_nas.measure.actor import measure_configs
    from effvit_nas.measure.store import MeasurementStore

    cfgs = [load_config(c) for c in configs]
    settings = bench_settings(device, protocol)
    store = MeasurementStore(storage)
    names = {c.short_hash(): preset_name(c) or c.short_hash() for c in cfgs}

    s = settings
    header = f"bench on {device}: batch {s.batch}, {s.precision}, {s.threads} thread(s), backend {s.backend}, warm-up {s.warmup_s:g} s, timed {s.measure_s:g} s"
    printed: list[bool] = []

    def show(m) -> None:
        if not as_json:
            if not printed:  # after validation, so bad input prints nothing but its error
                click.echo(header)
                printed.append(True)
            extra = f"  ({m.note})" if m.note else ""
            click.echo(
                f"{names[m.config_hash]:>12}  {m.throughput:10.1f} img/s  IQR {m.q1:.1f}-{m.q3:.1f}  CV {100 * m.cv:.1f}%  "
                f"{m.iterations} iters  {'cached' if m.cached else f'{m.seconds:.1f} s'}{extra}"
            )

    results = measure_configs(cfgs, device, settings, store, fresh=fresh, ray_address=ray_address, on_result=show)
    if as_json:
        records = [m.to_dict() for m in results]
        print_json(records[0] if len(records) == 1 else records)
    else:
        d = results[0].device
        click.echo(f"device: {d['name']} [{d['id']}], torch {d['torch']}; store: {store.url}")
