"""`fidelity`: how well each proxy ranks architectures against a longer reference training."""

from __future__ import annotations

import functools

import click

from effvit_nas.cli.common import SEED, SPACE_HELP, STORAGE_HELP, data_config, data_options, print_json, setting_flags, table
from effvit_nas.errors import UserError

FLAGS = {"FidelitySettings.proxies": "--proxies", "ShortTrainSettings.batch": "--batch"}


@click.command("fidelity")
@click.option("--space", default="efficientvit64", show_default=True, help=SPACE_HELP)
@functools.partial(data_options, data_default="fashion-mnist")
@click.option("--archs", type=int, default=16, show_default=True, help="Architectures to draw from the space.")
@click.option("--band", default=None, help="Keep only architectures measured within BUDGET±X% (M0±20%, 2.5k+-15%) on --device.")
@click.option(
    "--proxies", default=None, help="Comma-separated proxies, train@STEPS for short training [default: all, train@50, train@200]."
)
@click.option("--reference-epochs", type=float, default=None, help="Reference training: passes over its images [default: 5].")
@click.option("--reference-steps", type=click.IntRange(min=1), default=None, help="Reference training: updates (instead of epochs).")
@click.option(
    "--reference-per-class", type=click.IntRange(min=1), default=1000, show_default=True, help="Reference training images per class."
)
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True, help="Reference trainings per architecture.")
@click.option(
    "--seed", type=SEED, default=0, show_default=True, help="Sampling, subsampling and proxy seed; references use SEED, SEED+1, ..."
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Training batch of the train proxy and the reference."
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads per evaluation [default: up to 4].")
@click.option("--device", default="cpu", show_default=True, help="Where --band throughput is measured.")
@click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Seconds of warm-up before a throughput is timed.")
@click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Seconds of timed iterations per throughput.")
@click.option("--study", "study_name", default=None, help="Study name [default: fidelity-<space>-<data>-<band>-s<seed>].")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster instead of a local Ray.")
@click.option("--report-only", is_flag=True, help="Print what the study holds; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def fidelity_cmd(**opts) -> None:
    """Score architectures with every proxy and a reference training (--seeds seeds), and print
    each proxy's Spearman and Kendall against the reference with bootstrap 95 % intervals,
    top-5 overlap and seconds per candidate; the reference's seed-to-seed Kendall is the
    ceiling. Results are stored in the study and reused: a run resumes where the last stopped,
    and adding a proxy later costs only that proxy.
    """
    from effvit_nas.fidelity.report import build_report
    from effvit_nas.fidelity.run import check_supernet_weights, open_store, pending_jobs
    from effvit_nas.measure.store import default_storage

    with setting_flags(FLAGS):
        settings = _settings(opts)
    storage = opts["storage"] or default_storage()
    study = opts["study_name"] or _default_name(settings)
    store = open_store(settings, storage, study, create=not opts["report_only"])
    if opts["report_only"]:
        archs = store.archs()[: settings.archs]
    else:
        check_supernet_weights(settings, store)
        archs = _draw(settings, store, storage, opts["ray_address"])  # progress on stderr, also with --json
        jobs, stored = pending_jobs(settings, store, archs)
        _run(settings, store, archs, jobs, stored)
    if len(archs) < 3:
        raise UserError(f"study {study!r} holds {len(archs)} architectures: run it without --report-only first")
    report = build_report(settings, store, archs)
    print_json(report.to_dict()) if opts["as_json"] else _print(report)


def _settings(opts):
    from effvit_nas.fidelity.settings import DEFAULT_PROXIES, Band, FidelitySettings, ProxySpec
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.proxy.short_training import ShortTrainSettings

    if opts["reference_epochs"] is not None and opts["reference_steps"] is not None:
        raise UserError("give --reference-epochs or --reference-steps, not both")
    names = opts["proxies"].split(",") if opts["proxies"] is not None else DEFAULT_PROXIES  # "" is refused, not all
    return FidelitySettings(
        space=opts["space"],
        data=data_config(opts),
        archs=opts["archs"],
        band=Band.parse(opts["band"]) if opts["band"] else None,
        proxies=tuple(ProxySpec.parse(p, stored=opts["report_only"]) for p in names),
        reference_epochs=5.0 if opts["reference_epochs"] is None else opts["reference_epochs"],
        reference_steps=opts["reference_steps"],
        reference_per_class=opts["reference_per_class"],
        seeds=opts["seeds"],
        seed=opts["seed"],
        train=ShortTrainSettings(batch=opts["batch"]),
        device=opts["device"],
        bench=BenchSettings.for_device(_kind(opts["device"]), warmup_s=opts["warmup_s"], measure_s=opts["measure_s"]),
        threads=opts["threads"],
    )


def _kind(device: str) -> str:
    from effvit_nas.cli.common import device_kind
    from effvit_nas.measure.devices import parse_device

    return device_kind(parse_device(device))


def _default_name(settings) -> str:
    from pathlib import Path

    data = Path(settings.data.source).name or settings.data.source
    band = str(settings.band).replace("±", "pm").replace("%", "pct") if settings.band else "all"
    return f"fidelity-{Path(settings.space).stem}-{data}-{band}-s{settings.seed}"


def _draw(settings, store, storage, ray_address):
    from effvit_nas.fidelity.run import device_measurer, draw_architectures
    from effvit_nas.measure.actor import connect

    have = len(store.archs())
    connect(ray_address)
    if have >= settings.archs:
        return store.archs()[: settings.archs]
    where = f" in {settings.band}" if settings.band else ""
    click.echo(f"drawing {settings.archs - have} architectures from {settings.space}{where} (throughput on {settings.device})", err=True)
    show = functools.partial(_show_draw, settings.archs)
    return draw_architectures(settings, store, device_measurer(settings, storage, ray_address), show)


def _show_draw(total: int, kept: int, drawn: int) -> None:
    click.echo(f"\r  {kept}/{total} kept of {drawn} drawn", err=True, nl=kept >= total)


def _run(settings, store, archs, jobs, stored) -> None:
    import sys

    from effvit_nas.fidelity.run import run_jobs

    click.echo(f"{stored} results stored, {len(jobs)} to run", err=True)
    if not jobs:
        return
    with click.progressbar(length=len(jobs), label="evaluating", file=sys.stderr, show_pos=True, item_show_func=lambda j: j or "") as bar:
        run_jobs(settings, store, archs, jobs, lambda job, result: bar.update(1, job.label()))


def _value_and_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _proxy_table(rows, ceiling=None, reference_seconds=None) -> str:
    lines = []
    for r in rows:
        a = r.agreement
        cells = (
            [_value_and_ci(a.kendall, a.kendall_ci), _value_and_ci(a.spearman, a.spearman_ci), f"{a.top_k_overlap:.2f}"] if a else ["-"] * 3
        )
        lines.append([r.proxy, *cells, f"{r.seconds:.2f}" if r.seconds is not None else "-", r.note])
    if ceiling is not None:
        c = ceiling
        lines.append(["reference seed vs seed (ceiling)", _value_and_ci(c.kendall, c.kendall_ci), _value_and_ci(c.spearman, c.spearman_ci),
                      f"{c.top_k_overlap:.2f}", f"{reference_seconds:.1f}", ""])  # fmt: skip
    k = next((r.agreement.top_k for r in rows if r.agreement), 5)
    return table(["proxy", "Kendall [95% CI]", "Spearman [95% CI]", f"top-{k} overlap", "s / candidate", ""], lines)


def _print(report) -> None:
    click.echo(f"study {report.study}: {report.complete} of {report.archs} architectures have every reference seed")
    click.echo(_proxy_table(report.rows, report.ceiling, report.reference_seconds))
    if report.first_seed_rows:
        click.echo(f"\nagainst the first reference seed alone ({report.first_seed} architectures have it; partial, until every seed ran):")
        click.echo(_proxy_table(report.first_seed_rows))
