"""`proxy`: proxy accuracy or zero-cost score of configs."""

from __future__ import annotations

import click

from effvit_nas.arch.config import load_config, preset_name
from effvit_nas.cli.common import SEED, data_options, print_json


@click.command("proxy")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option(
    "--proxy",
    "proxy_name",
    default="train",
    show_default=True,
    help="train, synflow, naswot, gradnorm, dss, params, macs, or supernet:DIR (a trained supernet folder).",
)
@data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Training batch of the train proxy.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="torch threads [default: the CPUs not busy (affinity less the load)]."
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for data, init and order.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def proxy_cmd(
    configs, proxy_name, data_source, img_size, classes, train_per_class, val_per_class, steps, batch, threads, seed, as_json
) -> None:
    """Proxy accuracy (train) or score (zero-cost) of each CONFIG.

    CONFIG is a preset (M0..M5) or a YAML/JSON file; the model is rebuilt at --img-size with
    the data's class count. Higher is better for every proxy.
    """
    from effvit_nas.runtime import free_cpus, passive_openmp

    passive_openmp()  # before torch is imported below
    from effvit_nas.data import DataConfig, load_data
    from effvit_nas.proxy.registry import check_proxy, evaluate_proxy
    from effvit_nas.proxy.short_training import ShortTrainSettings

    proxy_name = check_proxy(proxy_name)
    cfgs = [load_config(c) for c in configs]
    data = load_data(DataConfig(data_source, img_size, classes, train_per_class, val_per_class, seed))
    settings = ShortTrainSettings(steps=steps, batch=batch, seed=seed, threads=threads or free_cpus())
    records = []
    for cfg in cfgs:
        r = evaluate_proxy(proxy_name, cfg, data, settings)
        rec = {**r.to_dict(), "data": data.source, "img_size": data.img_size, "num_classes": data.num_classes, "threads": settings.threads}
        records.append(rec)
        if not as_json:
            name = preset_name(cfg) or cfg.short_hash()
            shown = f"top-1 {100 * r.value:.1f} %" if r.kind == "accuracy" else f"score {r.value:.6g}"
            click.echo(f"{name:>12}  {proxy_name}  {shown}  ({r.seconds:.1f} s)")
    if as_json:
        print_json(records[0] if len(records) == 1 else records)
