"""`show`, `studies`, `pareto`, `export`: what a search found."""

from __future__ import annotations

import os
from pathlib import Path

import click

from effvit_nas.cli.common import STORAGE_HELP, print_json, print_trials, read_study, setting_flags, table
from effvit_nas.errors import UserError


@click.command("show")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of trials.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one row per trial, the config as a JSON cell).")
def show_cmd(study_name, storage, as_json, as_csv) -> None:
    """List a study's trials: state, config, params, MACs, each target's figure (img/s, or p50/p90
    ms for latency), accuracy, feasibility, Pareto."""
    from effvit_nas.results.studies import records_csv, study_records

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    study, info, url = read_study(study_name, storage)
    records = study_records(study, url)
    if as_json:
        print_json(records)
        return
    if as_csv:
        click.echo(records_csv(records), nl=False)
        return
    if info.several:
        click.echo(f"study {study_name}: {len(info.targets)} targets ({info.budget_text()}), proxy {info.proxy}")
    else:
        click.echo(f"study {study_name}: device {info.device}, budget {info.budget_text().removeprefix('>= ')}, proxy {info.proxy}")
    print_trials(records, title=f"{len(records)} trials")
    comparison = study.user_attrs.get("comparison")
    if comparison:
        from effvit_nas.training.comparison import TABLE_HEADERS, table_rows

        click.echo(
            f"\ncompared with {comparison['baseline']} (same recipe, data and seeds {comparison['seeds']}; throughput re-measured interleaved):"
        )
        click.echo(table(TABLE_HEADERS, table_rows(comparison["rows"])))


@click.command("studies")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def studies_cmd(storage, as_json) -> None:
    """List the studies in the storage: trials, feasible, Pareto size, each target and its budget, created."""
    from effvit_nas.measure.store import default_storage
    from effvit_nas.results.studies import list_studies

    url = storage or default_storage()
    rows = list_studies(url)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no studies in {url}")
        return
    n = max(len(r["targets"]) for r in rows)
    target_headers = ["target (budget)"] if n == 1 else [f"target {i + 1} (budget)" for i in range(n)]
    click.echo(
        table(
            ["study", "trials", "feasible", "pareto", *target_headers, "proxy", "created (UTC)"],
            [
                [
                    r["study"],
                    r["trials"],
                    r["feasible"],
                    r["pareto"],
                    *[t["text"] for t in r["targets"]],
                    *["-"] * (n - len(r["targets"])),
                    r["proxy"] or "-",
                    (r["created"] or "-").replace("+00:00", ""),
                ]
                for r in rows
            ],
        )
    )


def _writable_file(path: Path | None, suffix: str, option: str) -> None:
    if path is None:
        return
    if path.suffix.lower() != suffix:
        raise UserError(f"{option} must name a {suffix} file, got {str(path)!r}")
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the folder of {option} {str(path)!r}: {e.strerror or e}") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {option} {str(path)!r}")


@click.command("pareto")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option(
    "--out",
    "png",
    type=click.Path(path_type=Path),
    default=None,
    help="PNG file [default: <study>-pareto.png unless --html or --json is given].",
)
@click.option("--html", type=click.Path(path_type=Path), default=None, help="Interactive HTML file (plotly, self-contained).")
@click.option("--with-presets", is_flag=True, help="Measure and score M0-M5 on the study's device/protocol/proxy where missing.")
@click.option("--ray-address", default=None, help="Ray cluster holding the study's device (for --with-presets).")
@click.option("--json", "as_json", is_flag=True, help="Also print the plotted numbers as JSON.")
def pareto_cmd(study_name, storage, png, html, with_presets, ray_address, as_json) -> None:
    """Plot proxy accuracy vs each target's figure (a panel per target: img/s, or p50 ms for a
    latency target): trials, budget line, Pareto front, M0-M5 references."""
    from effvit_nas.results.plots import pareto_view, save_html, save_png, view_json
    from effvit_nas.results.references import reference_points
    from effvit_nas.results.studies import device_description

    if png is None and html is None and not as_json:  # --json alone prints, writes nothing
        png = Path(f"{study_name}-pareto.png")
    study, info, url = read_study(study_name, storage)  # first: a missing study creates no --out folder
    _writable_file(png, ".png", "--out")
    _writable_file(html, ".html", "--html")
    if not as_json and with_presets:
        click.echo(f"M0-M5 on {info.device} ({info.protocol()}), proxy {info.proxy}: measuring and scoring what is missing ...")
    refs = reference_points(study, info, url, measure=with_presets, ray_address=ray_address)
    view = pareto_view(study, info, [device_description(study, info, url, i) for i in range(len(info.targets))], refs)
    if png is not None:
        save_png(view, png)
    if html is not None:
        save_html(view, html)
    if as_json:
        print_json(view_json(view))
        return
    click.echo(f"{view.title}\n{view.subtitle}")
    if info.several:  # one panel per target
        for p in view.panels:
            click.echo(f"  panel {p.index + 1}: {p.title()} · {p.subtitle}")
    click.echo(
        f"  Pareto {'front' if not info.several else 'set'} {len(view.front)}, other feasible {len(view.feasible)}, under budget {len(view.under_budget)}, "
        f"not measured {view.skipped}; M0-M5 drawn: {', '.join(r.name for r in view.references) or 'none (add --with-presets)'}"
    )
    for f in (png, html):
        if f is not None:
            click.echo(f"wrote {f}")


def _figure(t: dict) -> str:
    """A target's figure as `export` prints it: ``cpu/trace 812 img/s``, ``cpu/openvino p50 3.20 ms``."""
    from effvit_nas.trials.records import fmt_ms

    if not t["measured"] or not t["figure"]:
        return f"{t['name']} not measured"
    return f"{t['name']} p50 {fmt_ms(t['p50_ms'])} ms" if t["metric"] == "latency" else f"{t['name']} {t['figure']:,.0f} img/s"


def _drift(t: dict) -> str:
    """A target's drift on re-measuring, in its unit: ``cpu/openvino p50 -3.1 %``."""
    from effvit_nas.results.export import DRIFT_LIMIT

    what = "p50 " if t["metric"] == "latency" else ""
    return f"{t['name']} {what}{100 * t['drift']:+.1f} %" + (f" — over {100 * DRIFT_LIMIT:.0f} %!" if abs(t["drift"]) > DRIFT_LIMIT else "")


@click.command("export")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Folder to write one sub-folder per model into.")
@click.option("--pareto", "pareto", is_flag=True, help="Export the Pareto set (the default).")
@click.option("--trial", "trial", type=int, multiple=True, help="Export trial N (repeatable).")
@click.option("--top", type=int, default=None, help="Export the K best feasible architectures by proxy value.")
@click.option("--onnx", is_flag=True, help="Also write model.onnx (fused deployment form, symbolic batch).")
@click.option("--remeasure", is_flag=True, help="Measure the exported models again on every target and flag a drift over 5 %.")
@click.option("--ray-address", default=None, help="Ray cluster holding the study's device (for --remeasure).")
@click.option("--force", is_flag=True, help="Write into a folder that holds another study's exports (its index.json is replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print what was exported as JSON.")
def export_cmd(study_name, storage, out, pareto, trial, top, onnx, remeasure, ray_address, force, as_json) -> None:
    """Write chosen models as folders: config YAML, timm kwargs, measurement, proxy scores,
    optional ONNX and a model card."""
    from effvit_nas.results.export import DRIFT_LIMIT, export_trials, select_trials, unit_drift

    if sum([pareto, bool(trial), top is not None]) > 1:
        raise UserError("give one of --pareto, --trial N, --top K")
    study, info, url = read_study(study_name, storage)
    chosen = select_trials(study, pareto=pareto, trial=list(trial), top=top)
    with setting_flags({"export_trials.out": "--out"}):
        done = export_trials(study, info, url, chosen, out, onnx=onnx, remeasure=remeasure, ray_address=ray_address, force=force)
    if as_json:
        print_json(
            [
                {
                    "trial": e.trial,
                    "hash": e.config_hash,
                    "folder": str(e.folder),
                    "throughput": e.throughput,
                    "accuracy": e.accuracy,
                    "remeasured": e.remeasured,
                    "drift": e.drift,
                    "drifted": e.drifted,
                    "targets": [{k: v for k, v in t.items() if k not in ("device", "protocol", "record")} for t in e.targets],
                }
                for e in done
            ]
        )
        return
    for e in done:
        line = f"trial {e.trial} {e.config_hash} -> {e.folder}"
        if info.several or info.target.latency:
            line += f" ({', '.join(_figure(t) for t in e.targets)})"
        if info.several and e.remeasured is not None:
            line += f"  (re-measured: {', '.join(_drift(t) for t in e.targets if t.get('drift') is not None)})"
        elif e.remeasured is not None:
            t = info.target
            line += f"  (re-measured {t.text(e.remeasured)}, was {t.text(e.throughput)}: drift {100 * unit_drift(t, e.drift or 0):+.1f} %"
            line += f" — over {100 * DRIFT_LIMIT:.0f} %!)" if e.drifted else ")"
        click.echo(line)
    click.echo(f"exported {len(done)} model(s) to {out}")
