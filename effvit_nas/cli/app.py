"""The ``effvit-nas`` command line.

Every command has ``--help``. Bad input (unknown preset, malformed YAML, invalid config, ...)
ends with one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from effvit_nas.arch.config import ArchConfig, load_config, preset_name
from effvit_nas.errors import SettingError, UserError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
def app() -> None:
    """Hardware-aware neural architecture search for EfficientViT."""


@app.group("space", no_args_is_help=True)
def space_app() -> None:
    """Inspect search spaces and sample configs from them."""


@app.group("model", no_args_is_help=True)
def model_app() -> None:
    """Inspect single architectures (presets or config files)."""


SPACE_HELP = "Search-space YAML file, or the name of a bundled space (default: efficientvit)."
STORAGE_HELP = "SQLAlchemy URL [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db]."


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_tuple(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _describe(config: ArchConfig) -> dict[str, Any]:
    """The JSON record of one architecture: id, cost and config."""
    from effvit_nas.model.cost import model_cost
    from effvit_nas.model.timm_compat import timm_kwargs

    cost = model_cost(config)
    return {
        "hash": config.short_hash(),
        "preset": preset_name(config),
        "params": cost.params,
        "macs": cost.macs,
        "img_size": config.img_size,
        "resolutions": list(config.resolutions()),
        "windows": [min(w, r) for w, r in zip(config.windows, config.resolutions())],
        "timm_kwargs": timm_kwargs(config),
        "config": config.to_dict(),
    }


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


@space_app.command("show")
@click.option("--space", default=None, help=SPACE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def space_show(space: str | None, as_json: bool) -> None:
    """Knobs, their ranges per stage, the space size and which presets it contains."""
    from effvit_nas.arch.space import load_space

    s = load_space(space)
    size = s.size()
    presets = s.presets_inside()
    if as_json:
        _print_json({"space": s.to_dict(), "source": s.source, "size": size, "presets": presets})
        return
    click.echo(f"space {s.name}  ({s.source})")
    if s.description:
        click.echo(f"  {s.description}")
    knobs = {k.name: k for k in s.knobs()}
    rows = []
    for prefix in ("heads", "head_dim", "depth", "qk_dim", "v_ratio", "ffn_ratio", "window"):
        rows.append([prefix] + [knobs[f"{prefix}_{i}"].describe() for i in range(s.num_stages)])
    click.echo(_table(["knob"] + [f"stage {i}" for i in range(s.num_stages)], rows))
    click.echo("width = heads x head_dim")
    click.echo(f"kernels (per head, all stages): {' | '.join(_fmt_tuple(k) for k in s.kernels)}")
    click.echo(f"img_size: {knobs['img_size'].describe()}   num_classes: {s.num_classes}")
    click.echo(f"size: {size:,} parameter combinations (10^{math.log10(size):.1f})")
    inside = [n for n, ok in presets.items() if ok]
    outside = [n for n, ok in presets.items() if not ok]
    click.echo(f"presets inside: {', '.join(inside) or 'none'}" + (f"   outside: {', '.join(outside)}" if outside else ""))


@space_app.command("sample")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=5, show_default=True, help="How many configs to draw.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same configs.")
@click.option("--space", default=None, help=SPACE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (hash, params, macs, config per entry).")
def space_sample(n: int, seed: int, space: str | None, as_json: bool) -> None:
    """Draw N valid configs uniformly from the space, with their params and MACs."""
    import numpy as np

    from effvit_nas.arch.space import load_space

    s = load_space(space)
    rng = np.random.default_rng(seed)
    records = [_describe(s.sample(rng)) for _ in range(n)]
    if as_json:
        _print_json(records)
        return
    rows = []
    for r in records:
        c = ArchConfig.from_dict(r["config"])
        rows.append(
            [
                r["hash"],
                _fmt_tuple(c.widths),
                _fmt_tuple(c.depths),
                _fmt_tuple(c.heads),
                _fmt_tuple(c.qk_dims),
                _fmt_tuple(c.v_ratios),
                _fmt_tuple(c.ffn_ratios),
                _fmt_tuple(c.windows),
                _fmt_tuple(c.kernels[: max(c.heads)]),
                c.img_size,
                f"{r['params'] / 1e6:.2f}",
                f"{r['macs'] / 1e6:.1f}",
            ]
        )
    headers = ["hash", "widths", "depths", "heads", "qk", "v_ratio", "ffn", "window", "kernels", "img", "params(M)", "MACs(M)"]
    click.echo(_table(headers, rows))


@model_app.command("info")
@click.argument("config")
@click.option("--img-size", type=click.IntRange(min=16), default=None, help="Build at this input size (px) instead of the config's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (params, macs, img_size, hash, config, ...).")
def model_info(config: str, img_size: int | None, as_json: bool) -> None:
    """Params, MACs, stage resolutions and the config of one architecture.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file.
    """
    cfg = load_config(config)
    if img_size is not None:
        cfg = cfg.replace(img_size=img_size)
    r = _describe(cfg)
    if as_json:
        _print_json(r)
        return
    name = f" (preset {r['preset']})" if r["preset"] else ""
    click.echo(f"model {r['hash']}{name}")
    click.echo(f"params: {r['params']:,}   MACs: {r['macs'] / 1e6:.1f} M at {cfg.img_size}x{cfg.img_size}")
    click.echo(f"stage resolutions: {_fmt_tuple(tuple(r['resolutions']))}   effective windows: {_fmt_tuple(tuple(r['windows']))}")
    click.echo(f"timm-expressible: {'yes' if r['timm_kwargs'] else 'no'}")
    click.echo(cfg.to_yaml().rstrip())


@model_app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_list(as_json: bool) -> None:
    """The released presets M0..M5 with params and MACs at 224 px."""
    from effvit_nas.arch.config import PRESETS

    records = {name: _describe(cfg) for name, cfg in PRESETS.items()}
    if as_json:
        _print_json(records)
        return
    rows = [
        [
            n,
            r["hash"],
            _fmt_tuple(tuple(r["config"]["widths"])),
            _fmt_tuple(tuple(r["config"]["depths"])),
            _fmt_tuple(tuple(r["config"]["heads"])),
            f"{r['params']:,}",
            f"{r['macs'] / 1e6:.1f}",
        ]
        for n, r in records.items()
    ]
    click.echo(_table(["preset", "hash", "widths", "depths", "heads", "params", "MACs(M)"], rows))


@app.command("bench")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option(
    "--device", "device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, auto, or a GPU name (v100, a100, h100, ...)."
)
@click.option("--batch", type=int, default=None, help="Images per forward pass [default: 16 on CPU, 2048 on GPU].")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU intra-op threads.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="[default: fp32 on CPU, fp16 autocast on GPU]")
@click.option(
    "--backend",
    type=click.Choice(["eager", "trace", "compile", "onnxruntime"]),
    default="trace",
    show_default=True,
    help="How the fused model runs.",
)
@click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Seconds of warm-up iterations.")
@click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Seconds of timed iterations.")
@click.option(
    "--storage", default=None, help="SQLAlchemy URL of the measurement store [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db]."
)
@click.option("--fresh", is_flag=True, help="Measure again even if the store has this measurement (replaces it).")
@click.option("--ray-address", default=None, help="Join this Ray cluster (e.g. auto, ray://head:10001) instead of a local Ray.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def bench(configs, device, batch, threads, precision, backend, warmup_s, measure_s, storage, fresh, ray_address, as_json) -> None:
    """Measure the throughput (images/s) of each CONFIG on a device.

    CONFIG is a preset (M0..M5) or a YAML/JSON config file. The model is measured in
    deployment form (BN fused), by default traced, with a time-based warm-up and the median
    over timed iterations, in a Ray actor that holds the device exclusively. Results are kept
    in the store and reused unless --fresh.
    """
    from effvit_nas.measure.actor import measure_configs
    from effvit_nas.measure.devices import parse_device
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.measure.store import MeasurementStore

    cfgs = [load_config(c) for c in configs]
    settings = BenchSettings.for_device(
        _device_kind(parse_device(device)),
        batch=batch,
        precision=precision,
        threads=threads,
        backend=backend,
        warmup_s=warmup_s,
        measure_s=measure_s,
    )
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
        _print_json(records[0] if len(records) == 1 else records)
    else:
        d = results[0].device
        click.echo(f"device: {d['name']} [{d['id']}], torch {d['torch']}; store: {store.url}")


def _data_options(f, img_size_default: int | None = 64, img_size_help: str = "Proxy resolution (px)."):
    """The data options shared by `proxy`, `search` and `train`."""
    options = [
        click.option(
            "--data",
            "data_source",
            default="synthetic",
            show_default=True,
            help="synthetic, or a directory: ImageFolder (train/, val/) or CIFAR python batches.",
        ),
        click.option(
            "--img-size",
            type=click.IntRange(min=16),
            default=img_size_default,
            show_default=img_size_default is not None,
            help=img_size_help,
        ),
        click.option("--classes", type=click.IntRange(min=2), default=None, help="Use the first K classes [synthetic default: 10]."),
        click.option("--train-per-class", type=click.IntRange(min=1), default=None, help="At most N training images per class."),
        click.option("--val-per-class", type=click.IntRange(min=1), default=None, help="At most N held-out images per class."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _data_options_train(f):
    return _data_options(f, img_size_default=None, img_size_help="Training resolution (px) [default: the config's img_size].")


@app.command("proxy")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--proxy", "proxy_name", default="train", show_default=True, help="train, synflow, naswot, gradnorm, params or macs.")
@_data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Training batch of the train proxy.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads [default: all cores].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data, init and order.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def proxy_cmd(
    configs, proxy_name, data_source, img_size, classes, train_per_class, val_per_class, steps, batch, threads, seed, as_json
) -> None:
    """Proxy accuracy (train) or score (zero-cost) of each CONFIG.

    CONFIG is a preset (M0..M5) or a YAML/JSON file; the model is rebuilt at --img-size with
    the data's class count. Higher is better for every proxy.
    """
    from effvit_nas.proxy.data import DataConfig, load_data
    from effvit_nas.proxy.registry import PROXIES, evaluate_proxy
    from effvit_nas.proxy.short_training import ShortTrainSettings

    if proxy_name not in PROXIES:
        raise UserError(f"unknown proxy {proxy_name!r} (choose from {', '.join(PROXIES)})")
    cfgs = [load_config(c) for c in configs]
    data = load_data(DataConfig(data_source, img_size, classes, train_per_class, val_per_class, seed))
    settings = ShortTrainSettings(steps=steps, batch=batch, seed=seed, threads=threads)
    records = []
    for cfg in cfgs:
        r = evaluate_proxy(proxy_name, cfg, data, settings)
        rec = {**r.to_dict(), "data": data.source, "img_size": data.img_size, "num_classes": data.num_classes}
        records.append(rec)
        if not as_json:
            name = preset_name(cfg) or cfg.short_hash()
            shown = f"top-1 {100 * r.value:.1f} %" if r.kind == "accuracy" else f"score {r.value:.6g}"
            click.echo(f"{name:>12}  {proxy_name}  {shown}  ({r.seconds:.1f} s)")
    if as_json:
        _print_json(records[0] if len(records) == 1 else records)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


@app.command("search")
@click.option("--device", "device", default="cpu", show_default=True, help="Target device: cpu, cuda, cuda:N, auto, v100, a100, h100, ...")
@click.option("--budget", required=True, help="Throughput budget, e.g. 10k-imgs/s, 10000img/s, 2.5k, 300-imgs/s.")
@click.option(
    "--trials",
    type=int,
    default=None,
    help="Finished trials the study should hold when the command ends (a resumed study runs only the missing ones).",
)
@click.option("--timeout", default=None, help="Stop after this long, e.g. 90s, 30m, 2h.")
@click.option("--study", "study_name", default=None, help="Study name [default: effvit-<device>-<budget>].")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--space", default=None, help=SPACE_HELP)
@click.option(
    "--proxy",
    "proxy_name",
    default="naswot",
    show_default=True,
    help="Proxy: naswot, train, synflow, gradnorm, params, macs (results/proxy_fidelity.md).",
)
@_data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option("--batch", type=int, default=None, help="Throughput batch [default: 16 on CPU, 2048 on GPU].")
@click.option("--threads", type=int, default=1, show_default=True, help="Throughput CPU threads.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Throughput precision.")
@click.option("--backend", type=click.Choice(["eager", "trace", "compile", "onnxruntime"]), default="trace", show_default=True)
@click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Throughput warm-up seconds.")
@click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Throughput timed seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2", "random"]), default="tpe", show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates per round (proxies run in parallel Ray tasks)."
)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster instead of a local Ray.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seed-presets", is_flag=True, help="Enqueue the M0-M5 that are points of the space first.")
@click.option(
    "--heartbeat",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between trial heartbeats; trials silent for 3x are failed and re-run.",
)
@click.option(
    "--train-top",
    type=click.IntRange(min=1),
    default=None,
    help="After the search, export the K most accurate Pareto models and train each (`train` recipe).",
)
@click.option("--train-epochs", type=click.IntRange(min=1), default=300, show_default=True, help="Epochs for --train-top.")
@click.option("--train-batch", type=click.IntRange(min=2), default=256, show_default=True, help="Total batch for --train-top.")
@click.option("--train-workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Train workers for --train-top.")
@click.option("--train-out", type=click.Path(path_type=Path), default=None, help="Export folder for --train-top [default: <study>-models].")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def search_cmd(
    device,
    budget,
    trials,
    timeout,
    study_name,
    storage,
    space,
    proxy_name,
    data_source,
    img_size,
    classes,
    train_per_class,
    val_per_class,
    steps,
    batch,
    threads,
    precision,
    backend,
    warmup_s,
    measure_s,
    sampler,
    workers,
    ray_address,
    seed,
    seed_presets,
    heartbeat,
    train_top,
    train_epochs,
    train_batch,
    train_workers,
    train_out,
    quiet,
    as_json,
) -> None:
    """Search the space for the most accurate models that meet a throughput budget on DEVICE.

    Trials are measured (throughput, in a Ray actor holding the device) before their proxy
    runs; candidates under the budget skip the proxy. The study lives in the storage
    database: running the same command again resumes it.
    """
    from effvit_nas.arch.space import load_space
    from effvit_nas.measure.devices import parse_device
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.measure.store import default_storage
    from effvit_nas.proxy.data import DataConfig
    from effvit_nas.proxy.registry import PROXIES
    from effvit_nas.proxy.short_training import ShortTrainSettings
    from effvit_nas.search.loop import SearchSettings, parse_budget, parse_duration, run_search

    budget_v = parse_budget(budget)
    timeout_s = parse_duration(timeout) if timeout else None
    spec = parse_device(device)
    if proxy_name not in PROXIES:
        raise UserError(f"unknown proxy {proxy_name!r} (choose from {', '.join(PROXIES)})")
    sp = load_space(space)
    settings = SearchSettings(
        device=device,
        budget=budget_v,
        study=study_name or f"effvit-{device.lower()}-{budget_v:g}",
        storage=storage or default_storage(),
        space=sp.source,
        proxy=proxy_name,
        data=DataConfig(data_source, img_size, classes, train_per_class, val_per_class, seed),
        train=ShortTrainSettings(steps=steps, seed=seed),
        bench=BenchSettings.for_device(
            _device_kind(spec), batch=batch, precision=precision, threads=threads, backend=backend, warmup_s=warmup_s, measure_s=measure_s
        ),
        trials=trials,
        timeout_s=timeout_s,
        sampler=sampler,
        workers=workers,
        ray_address=ray_address,
        seed=seed,
        seed_presets=seed_presets,
        heartbeat_s=heartbeat,
    )

    def on_event(e) -> None:
        if quiet or as_json:
            return
        total = f"/{e.total}" if e.total else ""
        tp = f"{e.throughput:,.0f} img/s" if e.throughput is not None else "not measured"
        acc = f", {proxy_name} {_fmt_proxy(e.accuracy, proxy_name)}" if e.accuracy is not None else ""
        best = _fmt_proxy(e.best_accuracy, proxy_name) if e.best_accuracy is not None else "-"
        note = f" [{e.note}]" if e.note else ""
        click.echo(
            f"[{e.done}{total}] trial {e.number} {e.config_hash} {e.state.lower()}: {tp}{acc}{note} | "
            f"feasible {e.feasible_count}, best under budget {best}, pareto {e.pareto_size}, ETA {_fmt_eta(e.eta_s)}"
        )

    if not (quiet or as_json):
        b = settings.bench
        click.echo(
            f"study {settings.study} in {settings.storage}: budget {budget_v:,.0f} img/s on {device} "
            f"(batch {b.batch}, {b.precision}, {b.threads} thread(s), {b.backend}); proxy {proxy_name} on {data_source}; sampler {sampler}"
        )
    summary = run_search(settings, on_event)
    if train_top:
        summary.extra["trained"] = _train_top(settings, train_top, train_epochs, train_batch, train_workers, train_out, quiet or as_json)
    if as_json:
        _print_json(asdict(summary))
        return
    click.echo(
        f"{'interrupted: ' if summary.interrupted else ''}{summary.complete} complete ({summary.feasible} feasible), {summary.failed} failed; "
        f"{summary.skipped_predicted} skipped as predicted infeasible, audits right {summary.audit_correct}/{summary.audited}; {summary.seconds:.0f} s"
    )
    _print_trials(summary.pareto, title="Pareto set (feasible, non-dominated)")


def _train_top(settings, k: int, epochs: int, batch: int, workers: int, out: Path | None, quiet: bool) -> list[dict]:
    """Export the k most accurate Pareto models of the search and train each on the search's data."""
    from effvit_nas.results.export import export_trials
    from effvit_nas.results.pareto import pareto_trials
    from effvit_nas.results.studies import StudyInfo, load_study

    study = load_study(settings.study, settings.storage)
    chosen = pareto_trials(study)[:k]
    if not chosen:
        click.echo("--train-top: no feasible model to train", err=True)
        return []
    out = out or Path(f"{settings.study}-models")
    done = export_trials(study, StudyInfo.of(study), settings.storage, chosen, out)
    recipe = _recipe_for(settings.data, {"epochs": epochs, "batch": batch, "seed": settings.seed}, (), workers, quiet)
    results = []
    for e in done:
        arch = load_config(e.folder)
        data = replace(settings.data, img_size=arch.img_size)
        res = run_training(str(e.folder), data, recipe, None, workers, False, None, settings.storage, settings.ray_address, quiet=quiet)
        results.append({"trial": e.trial, "hash": e.config_hash, "folder": str(e.folder), "top1": res.top1, "top1_ema": res.top1_ema})
        if not quiet:
            click.echo(f"trial {e.trial} {e.config_hash}: trained top-1 {100 * res.top1:.1f} % ({e.folder})")
    return results


def _fmt_proxy(value: float, proxy: str | None) -> str:
    """Top-1 as a percentage for the training proxy, the raw score for zero-cost ones."""
    return f"{100 * value:.1f} %" if proxy == "train" else f"{value:.4g}"


def _print_trials(records: list[dict], title: str) -> None:
    click.echo(title + ":")
    if not records:
        click.echo("  (none)")
        return
    rows = []
    trained = any(r.get("trained_top1") is not None for r in records)
    for r in records:
        c = r.get("config") or {}
        rows.append(
            [
                r["number"],
                r["state"],
                r.get("hash") or "-",
                _fmt_tuple(tuple(c.get("widths", ()))) or "-",
                _fmt_tuple(tuple(c.get("depths", ()))) or "-",
                f"{r['params'] / 1e6:.2f}" if r.get("params") else "-",
                f"{r['macs'] / 1e6:.1f}" if r.get("macs") else "-",
                f"{r['throughput']:,.0f}" if r.get("throughput") else "-",
                _fmt_proxy(r["accuracy"], r.get("proxy")) if r.get("accuracy") is not None else "-",
                {True: "yes", False: "no", None: "-"}[r.get("feasible")],
                "*" if r.get("pareto") else "",
            ]
            + ([f"{100 * r['trained_top1']:.1f} %" if r.get("trained_top1") is not None else "-"] if trained else [])
        )
    headers = ["trial", "state", "hash", "widths", "depths", "params(M)", "MACs(M)", "img/s", "proxy", "feasible", "pareto"]
    click.echo(_table(headers + (["trained top-1"] if trained else []), rows))


def _open(study_name: str, storage: str | None):
    """(study, StudyInfo, storage URL) of an existing study made by `search`."""
    from effvit_nas.measure.store import default_storage
    from effvit_nas.results.studies import StudyInfo, load_study

    url = storage or default_storage()
    study = load_study(study_name, url)
    return study, StudyInfo.of(study), url


@app.command("show")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of trials.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one row per trial, the config as a JSON cell).")
def show_cmd(study_name, storage, as_json, as_csv) -> None:
    """List a study's trials: state, config, params, MACs, throughput, accuracy, feasibility, Pareto."""
    from effvit_nas.results.studies import records_csv, study_records

    study, info, _ = _open(study_name, storage)
    records = study_records(study)
    if as_json:
        _print_json(records)
        return
    if as_csv:
        click.echo(records_csv(records), nl=False)
        return
    click.echo(f"study {study_name}: device {info.device}, budget {info.budget:,.0f} img/s, proxy {info.proxy}")
    _print_trials(records, title=f"{len(records)} trials")


@app.command("studies")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def studies_cmd(storage, as_json) -> None:
    """List the studies in the storage: trials, feasible, Pareto size, device, budget, created."""
    from effvit_nas.measure.store import default_storage
    from effvit_nas.results.studies import list_studies

    url = storage or default_storage()
    rows = list_studies(url)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo(f"no studies in {url}")
        return
    click.echo(
        _table(
            ["study", "trials", "feasible", "pareto", "device", "budget img/s", "proxy", "created (UTC)"],
            [
                [
                    r["study"],
                    r["trials"],
                    r["feasible"],
                    r["pareto"],
                    r["device"] or "-",
                    f"{r['budget']:,.0f}" if r["budget"] else "-",
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


@app.command("pareto")
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
    """Plot proxy accuracy vs throughput: trials, budget line, Pareto front, M0-M5 references."""
    from effvit_nas.results.plots import pareto_view, save_html, save_png, view_json
    from effvit_nas.results.references import reference_points
    from effvit_nas.results.studies import device_description

    if png is None and html is None and not as_json:  # --json alone prints, writes nothing
        png = Path(f"{study_name}-pareto.png")
    _writable_file(png, ".png", "--out")
    _writable_file(html, ".html", "--html")
    study, info, url = _open(study_name, storage)
    if not as_json and with_presets:
        click.echo(f"M0-M5 on {info.device} ({info.protocol()}), proxy {info.proxy}: measuring and scoring what is missing ...")
    refs = reference_points(study, info, url, measure=with_presets, ray_address=ray_address)
    view = pareto_view(study, info, device_description(study, info, url), refs)
    if png is not None:
        save_png(view, png)
    if html is not None:
        save_html(view, html)
    if as_json:
        _print_json(view_json(view))
        return
    click.echo(f"{view.title}\n{view.subtitle}")
    click.echo(
        f"  Pareto front {len(view.front)}, other feasible {len(view.feasible)}, under budget {len(view.under_budget)}, "
        f"not measured {view.skipped}; M0-M5 drawn: {', '.join(r.name for r in view.references) or 'none (add --with-presets)'}"
    )
    for f in (png, html):
        if f is not None:
            click.echo(f"wrote {f}")


@app.command("export")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Folder to write one sub-folder per model into.")
@click.option("--pareto", "pareto", is_flag=True, help="Export the Pareto set (the default).")
@click.option("--trial", "trial", type=int, multiple=True, help="Export trial N (repeatable).")
@click.option("--top", type=int, default=None, help="Export the K best feasible architectures by proxy value.")
@click.option("--onnx", is_flag=True, help="Also write model.onnx (fused deployment form, symbolic batch).")
@click.option("--remeasure", is_flag=True, help="Measure the exported models again and flag throughput drift over 5 %.")
@click.option("--ray-address", default=None, help="Ray cluster holding the study's device (for --remeasure).")
@click.option("--json", "as_json", is_flag=True, help="Print what was exported as JSON.")
def export_cmd(study_name, storage, out, pareto, trial, top, onnx, remeasure, ray_address, as_json) -> None:
    """Write chosen models as folders: config YAML, timm kwargs, measurement, proxy scores,
    optional ONNX and a model card."""
    from effvit_nas.results.export import DRIFT_LIMIT, export_trials, select_trials

    if sum([pareto, bool(trial), top is not None]) > 1:
        raise UserError("give one of --pareto, --trial N, --top K")
    study, info, url = _open(study_name, storage)
    chosen = select_trials(study, pareto=pareto, trial=list(trial), top=top)
    done = export_trials(study, info, url, chosen, out, onnx=onnx, remeasure=remeasure, ray_address=ray_address)
    if as_json:
        _print_json(
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
                }
                for e in done
            ]
        )
        return
    for e in done:
        line = f"trial {e.trial} {e.config_hash} -> {e.folder}"
        if e.remeasured is not None:
            line += f"  (re-measured {e.remeasured:,.0f} img/s, was {e.throughput or 0:,.0f}: drift {100 * (e.drift or 0):+.1f} %"
            line += f" — over {100 * DRIFT_LIMIT:.0f} %!)" if e.drifted else ")"
        click.echo(line)
    click.echo(f"exported {len(done)} model(s) to {out}")


def _recipe_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set key=value`` pairs as typed TrainRecipe fields."""
    import dataclasses

    from effvit_nas.train.runner import TrainRecipe

    fields = {f.name: f for f in dataclasses.fields(TrainRecipe)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        default = getattr(TrainRecipe(), key)
        try:
            if isinstance(default, bool):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                out[key] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int) or key == "warmup_epochs":
                out[key] = int(value)
            elif isinstance(default, float) or key == "lr":
                out[key] = float(value)
            else:
                out[key] = value
        except ValueError:
            raise UserError(
                f"--set {pair!r}: {value!r} is not a valid {type(default).__name__ if default is not None else 'number'}"
            ) from None
    return out


def _recipe_for(data, options: dict[str, Any], overrides: tuple[str, ...], workers: int, quiet: bool):
    """The paper's recipe with the command's options, the data's needs (said once) and --set,
    later ones winning."""
    from effvit_nas.train.runner import TrainRecipe, data_defaults

    needed, why = data_defaults(data)
    explicit = _recipe_overrides(overrides)
    if why and not quiet and any(k not in explicit for k in needed):
        click.echo(f"note: {why}")
    return TrainRecipe(**{**options, **needed, **explicit}).resolved(workers)


def _teacher(spec: str | None) -> dict[str, Any] | None:
    """--distill: a folder holding config.yaml and trained weights (model.safetensors)."""
    if spec is None:
        return None
    path = Path(spec)
    weights = path / "model.safetensors"
    if not path.is_dir() or not weights.is_file():
        raise UserError(
            f"unknown teacher {spec!r}: give a folder with config.yaml and model.safetensors (a finished `effvit-nas train` --out)"
        )
    cfg = load_config(path)
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        heads = [k for k in f.keys() if k.startswith("head.") and k.endswith("weight") and len(f.get_slice(k).get_shape()) == 2]
        classes = f.get_slice(heads[-1]).get_shape()[0] if heads else None
    return {"arch": cfg.to_dict(), "weights": str(weights.resolve()), "num_classes": classes}


def run_training(
    config_path: str,
    data,
    recipe,
    out: Path | None,
    workers: int,
    resume: bool,
    distill: str | None,
    storage: str | None,
    ray_address: str | None,
    quiet: bool = False,
):
    """Train one config or export folder and put the result where users look: the output folder
    (train.json, weights) and, for an export folder, its model card and the study."""
    import torch

    from effvit_nas.train.runner import train

    arch = load_config(config_path)
    src = Path(config_path)
    export_dir = src if src.is_dir() and (src / "proxy.json").is_file() else None
    if out is None:
        out = export_dir if export_dir is not None else Path(f"train-{arch.short_hash()}")
    teacher = _teacher(distill)
    use_gpu = torch.cuda.is_available()
    if not quiet:
        click.echo(
            f"training {arch.short_hash()} on {data.source} ({data.img_size} px) with {workers} Ray Train worker(s), "
            f"{'GPU' if use_gpu else 'CPU'}; out {out}"
        )
        click.echo("recipe: " + ", ".join(f"{k}={v}" for k, v in asdict(recipe).items()))

    t_start = [None]

    def progress(p: dict) -> None:
        if quiet:
            return
        if "epoch_done" in p:
            m = p["epoch_done"]
            ema = f", EMA {100 * m['top1_ema']:.1f} %" if m.get("top1_ema") is not None else ""
            click.echo(f"epoch {m['epoch']}: loss {m['loss']:.3f}, top-1 {100 * m['top1']:.1f} %{ema}, {m['img_s']:.0f} img/s")
            return
        import time

        if t_start[0] is None:
            t_start[0] = (time.perf_counter(), p["epoch"], p["step"])
        t0, e0, s0 = t_start[0]
        done = (p["epoch"] - e0) * p["steps"] + p["step"] - s0
        left = (p["epochs"] - p["epoch"]) * p["steps"] + p["steps"] - p["step"]
        eta = (time.perf_counter() - t0) / done * left if done > 0 else None
        bar = "#" * int(20 * p["step"] / p["steps"])
        click.echo(
            f"  epoch {p['epoch']}/{p['epochs']} [{bar:<20}] {p['step']}/{p['steps']} loss {p['loss']:.3f} "
            f"lr {p['lr']:.2e} {p['img_s']:.0f} img/s ETA {_fmt_eta(eta)}"
        )

    res = train(
        arch,
        data,
        recipe,
        out,
        workers=workers,
        resume=resume,
        teacher=teacher,
        use_gpu=use_gpu,
        ray_address=ray_address,
        on_progress=progress,
    )
    if export_dir is not None:
        _record_training(export_dir, arch, res, storage, quiet)
    return res


def _record_training(folder: Path, arch: ArchConfig, res, storage: str | None, quiet: bool) -> None:
    """Trained accuracy next to the proxy score: in the model card and in the study."""
    card = folder / "README.md"
    ema = f" (EMA {100 * res.top1_ema:.1f} %)" if res.top1_ema is not None else ""
    line = f"\n## Trained\n\ntop-1 {100 * res.top1:.1f} %{ema} after {res.epochs} epochs (`effvit-nas train`, see train.json); weights: model.safetensors, model_ema.safetensors.\n"
    if card.exists():
        text = card.read_text().split("\n## Trained\n")[0].rstrip("\n") + "\n"
        card.write_text(text + line)
    proxy = json.loads((folder / "proxy.json").read_text())
    url = storage
    if url is None:
        index = folder.parent / "index.json"
        stored = json.loads(index.read_text()).get("storage") if index.exists() else None
        from effvit_nas.measure.store import default_storage

        url = stored if stored and "***" not in stored else default_storage()
    try:
        from effvit_nas.results.studies import load_study

        study = load_study(proxy["study"], url)
        trained = dict(study.user_attrs.get("trained", {}))
        trained[str(proxy["trial"])] = {
            "top1": res.top1,
            "top1_ema": res.top1_ema,
            "epochs": res.epochs,
            "hash": arch.short_hash(),
            "out": res.out,
        }
        study.set_user_attr("trained", trained)
        if not quiet:
            click.echo(f"recorded in study {proxy['study']!r} ({url}), trial {proxy['trial']}")
    except UserError as e:
        click.echo(f"warning: study not updated: {e}", err=True)


@app.command("train")
@click.argument("config", metavar="CONFIG_OR_EXPORT_DIR")
@_data_options_train
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--batch", type=click.IntRange(min=2), default=256, show_default=True, help="Total images per update over all workers.")
@click.option("--lr", type=float, default=None, help="Peak lr [default: 1e-3 x batch / 512].")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Train workers (DDP: gloo on CPU, NCCL on GPU)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest epoch checkpoint.")
@click.option(
    "--distill", default=None, metavar="TEACHER", help="Soft distillation from a trained model folder (config.yaml + model.safetensors)."
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [default: the export folder, or train-<hash>].")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe knob, e.g. --set mixup=0 --set ema_decay=0.999 (see the printed recipe).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--storage", default=None, help="Study database to record the trained accuracy in [default: the export's].")
@click.option("--ray-address", default=None, help="Join an existing Ray cluster.")
@click.option("--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train_cmd(
    config,
    data_source,
    img_size,
    classes,
    train_per_class,
    val_per_class,
    epochs,
    batch,
    lr,
    workers,
    resume,
    distill,
    out,
    overrides,
    seed,
    storage,
    ray_address,
    quiet,
    as_json,
) -> None:
    """Train CONFIG (preset, YAML or export folder) with the paper's recipe through Ray Train."""
    from effvit_nas.proxy.data import DataConfig

    arch = load_config(config)
    data = DataConfig(data_source, img_size or arch.img_size, classes, train_per_class, val_per_class, seed)
    recipe = _recipe_for(data, {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed}, overrides, workers, quiet or as_json)
    res = run_training(config, data, recipe, out, workers, resume, distill, storage, ray_address, quiet=quiet or as_json)
    if as_json:
        _print_json(asdict(res))
        return
    ema = f", EMA {100 * res.top1_ema:.1f} %" if res.top1_ema is not None else ""
    click.echo(
        f"top-1 {100 * res.top1:.1f} %{ema} after {res.epochs} epochs ({res.seconds:.0f} s, {res.images_per_s:.0f} img/s); weights in {res.out}"
    )


def _device_kind(spec) -> str:
    """``cuda`` or ``cpu``: which paper defaults (batch, precision) a device request gets."""
    if spec.kind == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if spec.kind == "cuda" else "cpu"


# settings whose flag is not the field name with dashes
_FLAGS = {"measure_s": "--duration", "warmup_s": "--warmup", "timeout_s": "--timeout", "heartbeat_s": "--heartbeat"}


def flag_for(error: SettingError) -> str:
    """The flag that sets ``error.setting``."""
    return _FLAGS.get(error.field, "--" + error.field.replace("_", "-"))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: bad input becomes one ``error:`` line and exit status 2."""
    try:
        rv = app.main(args=argv, prog_name="effvit-nas", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except SettingError as e:
        click.echo(f"error: {e.named(flag_for(e))}", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
