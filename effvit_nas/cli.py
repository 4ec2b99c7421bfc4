"""The ``effvit-nas`` command line.

Every command has ``--help``. Bad input (unknown preset, malformed YAML, invalid config, ...)
ends with one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import click

from effvit_nas.config import ArchConfig, load_config, preset_name
from effvit_nas.errors import UserError

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
    from effvit_nas.profile import model_cost
    from effvit_nas.timm_compat import timm_kwargs

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
def space_show(space: Optional[str], as_json: bool) -> None:
    """Knobs, their ranges per stage, the space size and which presets it contains."""
    from effvit_nas.space import load_space

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
def space_sample(n: int, seed: int, space: Optional[str], as_json: bool) -> None:
    """Draw N valid configs uniformly from the space, with their params and MACs."""
    import numpy as np

    from effvit_nas.space import load_space

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
def model_info(config: str, img_size: Optional[int], as_json: bool) -> None:
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
    from effvit_nas.config import PRESETS

    records = {name: _describe(cfg) for name, cfg in PRESETS.items()}
    if as_json:
        _print_json(records)
        return
    rows = [
        [n, r["hash"], _fmt_tuple(tuple(r["config"]["widths"])), _fmt_tuple(tuple(r["config"]["depths"])), _fmt_tuple(tuple(r["config"]["heads"])), f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}"]
        for n, r in records.items()
    ]
    click.echo(_table(["preset", "hash", "widths", "depths", "heads", "params", "MACs(M)"], rows))


@app.command("bench")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--device", "device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, auto, or a GPU name (v100, a100, h100, ...).")
@click.option("--batch", type=int, default=None, help="Images per forward pass [default: 16 on CPU, 2048 on GPU].")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU intra-op threads.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="[default: fp32 on CPU, fp16 autocast on GPU]")
@click.option("--backend", type=click.Choice(["eager", "trace", "compile", "onnxruntime"]), default="trace", show_default=True, help="How the fused model runs.")
@click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Seconds of warm-up iterations.")
@click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Seconds of timed iterations.")
@click.option("--storage", default=None, help="SQLAlchemy URL of the measurement store [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db].")
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
    from effvit_nas.devices import parse_device
    from effvit_nas.store import MeasurementStore
    from effvit_nas.throughput import BenchSettings
    from effvit_nas.workers import measure_configs

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


def _data_options(f):
    """The proxy-data options shared by `proxy` and `search`."""
    options = [
        click.option("--data", "data_source", default="synthetic", show_default=True, help="synthetic, or a directory: ImageFolder (train/, val/) or CIFAR python batches."),
        click.option("--img-size", type=click.IntRange(min=16), default=64, show_default=True, help="Proxy resolution (px)."),
        click.option("--classes", type=click.IntRange(min=2), default=None, help="Use the first K classes [synthetic default: 10]."),
        click.option("--train-per-class", type=click.IntRange(min=1), default=None, help="At most N training images per class."),
        click.option("--val-per-class", type=click.IntRange(min=1), default=None, help="At most N held-out images per class."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@app.command("proxy")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--proxy", "proxy_name", default="train", show_default=True, help="train, synflow, naswot, gradnorm, params or macs.")
@_data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Training batch of the train proxy.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads [default: all cores].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data, init and order.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one CONFIG, a list for several.")
def proxy_cmd(configs, proxy_name, data_source, img_size, classes, train_per_class, val_per_class, steps, batch, threads, seed, as_json) -> None:
    """Proxy accuracy (train) or score (zero-cost) of each CONFIG.

    CONFIG is a preset (M0..M5) or a YAML/JSON file; the model is rebuilt at --img-size with
    the data's class count. Higher is better for every proxy.
    """
    from effvit_nas.data import DataConfig, load_data
    from effvit_nas.proxy import PROXIES, evaluate_proxy
    from effvit_nas.short_training import ShortTrainSettings

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
@click.option("--trials", type=int, default=None, help="Finished trials the study should hold when the command ends (a resumed study runs only the missing ones).")
@click.option("--timeout", default=None, help="Stop after this long, e.g. 90s, 30m, 2h.")
@click.option("--study", "study_name", default=None, help="Study name [default: effvit-<device>-<budget>].")
@click.option("--storage", default=None, help="SQLAlchemy URL [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db].")
@click.option("--space", default=None, help=SPACE_HELP)
@click.option("--proxy", "proxy_name", default="naswot", show_default=True, help="Proxy: naswot, train, synflow, gradnorm, params, macs (results/proxy_fidelity.md).")
@_data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option("--batch", type=int, default=None, help="Throughput batch [default: 16 on CPU, 2048 on GPU].")
@click.option("--threads", type=int, default=1, show_default=True, help="Throughput CPU threads.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Throughput precision.")
@click.option("--backend", type=click.Choice(["eager", "trace", "compile", "onnxruntime"]), default="trace", show_default=True)
@click.option("--warmup", "warmup_s", type=float, default=1.5, show_default=True, help="Throughput warm-up seconds.")
@click.option("--duration", "measure_s", type=float, default=4.0, show_default=True, help="Throughput timed seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2", "random"]), default="tpe", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates per round (proxies run in parallel Ray tasks).")
@click.option("--ray-address", default=None, help="Join an existing Ray cluster instead of a local Ray.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seed-presets", is_flag=True, help="Enqueue the M0-M5 that are points of the space first.")
@click.option("--heartbeat", type=float, default=30.0, show_default=True, help="Seconds between trial heartbeats; trials silent for 3x are failed and re-run.")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def search_cmd(device, budget, trials, timeout, study_name, storage, space, proxy_name, data_source, img_size, classes, train_per_class, val_per_class,
               steps, batch, threads, precision, backend, warmup_s, measure_s, sampler, workers, ray_address, seed, seed_presets, heartbeat, quiet, as_json) -> None:
    """Search the space for the most accurate models that meet a throughput budget on DEVICE.

    Trials are measured (throughput, in a Ray actor holding the device) before their proxy
    runs; candidates under the budget skip the proxy. The study lives in the storage
    database: running the same command again resumes it.
    """
    from effvit_nas.data import DataConfig
    from effvit_nas.devices import parse_device
    from effvit_nas.proxy import PROXIES
    from effvit_nas.search import SearchSettings, parse_budget, parse_duration, run_search
    from effvit_nas.short_training import ShortTrainSettings
    from effvit_nas.space import load_space
    from effvit_nas.store import default_storage
    from effvit_nas.throughput import BenchSettings

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
        bench=BenchSettings.for_device(_device_kind(spec), batch=batch, precision=precision, threads=threads, backend=backend, warmup_s=warmup_s, measure_s=measure_s),
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
    if as_json:
        from dataclasses import asdict

        _print_json(asdict(summary))
        return
    click.echo(
        f"{'interrupted: ' if summary.interrupted else ''}{summary.complete} complete ({summary.feasible} feasible), {summary.failed} failed; "
        f"{summary.skipped_predicted} skipped as predicted infeasible, audits right {summary.audit_correct}/{summary.audited}; {summary.seconds:.0f} s"
    )
    _print_trials(summary.pareto, title="Pareto set (feasible, non-dominated)")


def _fmt_proxy(value: float, proxy: str | None) -> str:
    """Top-1 as a percentage for the training proxy, the raw score for zero-cost ones."""
    return f"{100 * value:.1f} %" if proxy == "train" else f"{value:.4g}"


def _print_trials(records: list[dict], title: str) -> None:
    click.echo(title + ":")
    if not records:
        click.echo("  (none)")
        return
    rows = []
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
        )
    click.echo(_table(["trial", "state", "hash", "widths", "depths", "params(M)", "MACs(M)", "img/s", "proxy", "feasible", "pareto"], rows))


@app.command("show")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", default=None, help="SQLAlchemy URL [default: $EFFVIT_NAS_STORAGE or sqlite:///effvit-nas.db].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of trials.")
def show_cmd(study_name, storage, as_json) -> None:
    """List a study's trials: state, config, params, MACs, throughput, accuracy, feasibility, Pareto."""
    import optuna

    from effvit_nas.search import pareto_trials, trial_record
    from effvit_nas.store import default_storage, open_engine

    url = storage or default_storage()
    open_engine(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(url)]
        raise UserError(f"no study {study_name!r} in {url} (studies: {', '.join(names) or 'none'})") from None
    numbers = {t.number for t in pareto_trials(study)}
    records = [trial_record(t, numbers) for t in study.get_trials(deepcopy=False)]
    if as_json:
        _print_json(records)
        return
    ident = study.user_attrs.get("effvit", {})
    click.echo(f"study {study_name}: device {ident.get('device')}, budget {ident.get('budget', 0):,.0f} img/s, proxy {ident.get('proxy')}")
    _print_trials(records, title=f"{len(records)} trials")


def _device_kind(spec) -> str:
    """``cuda`` or ``cpu``: which paper defaults (batch, precision) a device request gets."""
    if spec.kind == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if spec.kind == "cuda" else "cpu"


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
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
