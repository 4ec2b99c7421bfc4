"""`profile` (measure a target's calibration set once, fit and store its efficiency predictor)
and `predict` (throughput of configs from the stored predictor, with intervals, no timing)."""

from __future__ import annotations

import click

from effvit_nas.arch.config import MAX_IMG_SIZE, PRESETS
from effvit_nas.cli.common import SEED, SPACE_HELP, STORAGE_HELP, bench_options, bench_settings, print_json, setting_flags
from effvit_nas.errors import UserError
from effvit_nas.predict.features import FEATURE_SETS

DEVICE_HELP = "cpu, cuda, cuda:N, auto, or a GPU name (v100, a100, h100, ...)."


@click.command("profile")
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@bench_options
@click.option("--space", default="efficientvit", show_default=True, help=SPACE_HELP)
@click.option("--archs", type=click.IntRange(min=2), default=40, show_default=True, help="Space-filling sample size (M0..M5 come on top).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the scrambled Halton sample and of the folds.")
@click.option(
    "--anchor",
    default="M0",
    show_default=True,
    metavar="PRESET|none",
    help="Anchored figures (as bench --anchor) against this preset at the space's resolution; none: plain figures.",
)
@click.option(
    "--repeats", type=click.IntRange(min=0), default=3, show_default=True, help="Sampled archs measured again for the noise ceiling."
)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Folds of the held-out evaluation.")
@click.option(
    "--feature-set",
    default="best",
    show_default=True,
    help=f"Features of the fit ({', '.join(FEATURE_SETS)}), or best: the set with the most "
    "held-out architectures within ±10 % on this calibration. The others' held-out figures are printed beside.",
)
@click.option("--storage", default=None, help=STORAGE_HELP + " Holds the measurements and the fitted predictor.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored predictor record as JSON.")
def profile_cmd(device, space, archs, seed, anchor, repeats, folds, feature_set, storage, as_json, **protocol) -> None:
    """Measure a target's calibration set once (M0..M5 plus a space-filling sample of the
    space, reusing stored figures), fit its efficiency predictor, store it with the device
    fingerprint and protocol, and print how it does on architectures held out of the fit."""
    from effvit_nas.arch.space import load_space
    from effvit_nas.measure.actor import check_local
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.predict.calibration import calibration_set
    from effvit_nas.predict.features import BEST, feature_names
    from effvit_nas.predict.profile import profile_lines, run_profile

    if feature_set != BEST:
        with setting_flags({"EfficiencyPredictor.feature_set": "--feature-set"}):
            feature_names(feature_set)  # a typo fails before any measuring
    settings = bench_settings(device, protocol)
    sp = load_space(space)
    check_local(device, settings)  # an unknown device fails before the store is touched
    anchor_name = None if anchor.lower() == "none" else anchor.upper()
    if anchor_name is not None and anchor_name not in PRESETS:
        raise UserError(f"--anchor {anchor!r} is not a preset ({', '.join(PRESETS)}) or none")
    store = MeasurementStore(storage)
    items = calibration_set(sp, archs, seed)
    fit = (repeats, folds, seed, feature_set)
    record = run_profile(sp, items, device, settings, store, anchor_name, fit, _progress(items, as_json))
    if as_json:
        print_json(record)
    else:
        click.echo("\n".join(profile_lines(record)))


def _progress(items, as_json: bool):
    """Print each calibration figure as it comes (a calibration takes minutes)."""
    names = {c.short_hash(): label for label, c in items}

    def on_result(m) -> None:
        if not as_json:
            how = "stored" if m.cached else f"{m.seconds:.1f} s"
            click.echo(f"{names.get(m.config_hash, m.config_hash):>12}  {m.throughput:10.1f} img/s  ({how})")

    return on_result


@click.command("predict")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@bench_options
@click.option("--space", default=None, help="The profiled space whose predictor to use [default: the latest profiled for this target].")
@click.option(
    "--img-size",
    type=click.IntRange(min=16, max=MAX_IMG_SIZE),
    default=None,
    help="Predict each CONFIG rebuilt at this resolution (e.g. a preset at the profiled space's 64 px).",
)
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of predictions.")
def predict_cmd(configs, device, space, img_size, storage, as_json, **protocol) -> None:
    """Predict the throughput of each CONFIG on a device from the predictor `profile` stored
    for it (same device fingerprint and protocol), with its 90 % interval. Nothing is timed."""
    from effvit_nas.arch.config import load_config
    from effvit_nas.measure.actor import check_local
    from effvit_nas.predict.profile import load_profile, predict_configs

    settings = bench_settings(device, protocol)
    metric = settings.metric
    cfgs = [load_config(c) for c in configs]
    if img_size is not None:
        cfgs = [c.replace(img_size=img_size) for c in cfgs]
    fp = check_local(device, settings)
    record = load_profile(storage, fp, settings, metric, space, device)
    rows = predict_configs(record, configs, cfgs)
    if as_json:
        print_json(rows)
        return
    click.echo(f"predicted {metric} on {device} [{fp['id']}] from the profile of space {record['space']} ({record['fitted_at']}):")
    for r in rows:
        note = f"  ({r['note']})" if r["note"] else ""
        click.echo(
            f"{r['name']:>12}  {_figure(r['throughput'], metric)}  90% {_figure(r['low'], metric)} - {_figure(r['high'], metric)}{note}"
        )


def _figure(images_per_s: float, metric: str) -> str:
    # a latency figure is held as images/s at batch 1, like every figure of the engine
    return f"{1000.0 / images_per_s:8.3f} ms" if metric == "latency" else f"{images_per_s:10.1f} img/s"
