"""`search`: the architecture search, and optionally training its best models."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from effvit_nas.cli.common import (
    SEED,
    SPACE_HELP_DEFAULT,
    STORAGE_HELP,
    bench_options,
    bench_settings,
    data_config,
    data_options,
    fmt_eta,
    fmt_proxy,
    print_json,
    print_trials,
    setting_flags,
)
from effvit_nas.cli.search_predicted import predicted_options, split_budgets
from effvit_nas.cli.train_top import check_training_flags, compare_with_baseline, train_best
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import DEFAULT_ANCHOR


@click.command("search")
@click.option("--device", "device", default="cpu", show_default=True, help="Target device: cpu, cuda, cuda:N, auto, v100, a100, h100, ...")
@click.option(
    "--budget",
    default=None,
    help="Budget, its unit saying its metric: images/s (10k-imgs/s, 2.5k, 300-imgs/s), batch-1 p50 latency (5ms, 800us), or "
    "relative to a preset measured on DEVICE at the space's resolution (M0, 1.5xM0 = 1.5x as fast as M0 in --metric; "
    "resolved once per study and stored).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="DEVICE[/BACKEND]:BUDGET",
    help="A deployment target, e.g. cpu/openvino:4ms or cuda/tensorrt:2xM0 (one: as --device, --backend and --budget). "
    "Repeat it for several targets in one study: each is a constraint and an objective, every candidate is measured on each.",
)
@click.option(
    "--trials",
    type=int,
    default=None,
    help="Finished trials the study should hold when the command ends (a resumed study runs only the missing ones).",
)
@click.option("--timeout", default=None, help="Stop after this long, e.g. 90s, 30m, 2h.")
@click.option("--study", "study_name", default=None, help="Study name [default: effvit-<device>-<budget>].")
@click.option("--storage", default=None, help=STORAGE_HELP)
@click.option("--space", default=None, help=SPACE_HELP_DEFAULT)
@click.option(
    "--proxy",
    "proxy_name",
    default=None,
    help="Proxy: macs, naswot, train, synflow, gradnorm, dss, params, or supernet:DIR (a trained supernet folder) "
    "[default: macs, which ranked trained accuracy best on real images (results/proxy_fidelity_fashion.md); "
    "a resumed study keeps its own].",
)
@data_options
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps of the train proxy.")
@click.option(
    "--halving",
    type=click.IntRange(min=2),
    default=None,
    help="Successive halving of --proxy train with this eta (3: judged at 1/9 and 1/3 of --steps, the best third by Pareto rank go on) [default: off].",
)
@bench_options
@click.option(
    "--sampler",
    type=click.Choice(["tpe", "nsga2", "random"]),
    default="tpe",
    show_default=True,
    help="Optuna sampler that proposes candidates.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Proxies that run at once (Ray tasks of 1 CPU).")
@click.option(
    "--measure-actors",
    type=click.IntRange(min=1),
    default=None,
    help="Device actors measuring at once [default: one per matching accelerator: each GPU of the device's type, each node's CPU].",
)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster instead of a local Ray.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the sampler, the proxies and --train-top's first seed.")
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
@click.option(
    "--train-set",
    "train_overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe knob for --train-top, as `train --set` (e.g. --train-set mixup=0).",
)
@click.option(
    "--train-top-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Training images per class for --train-top [default: the search's --train-per-class]; "
    "--train-top always evaluates on the whole held-out split.",
)
@click.option(
    "--baseline",
    default=None,
    help="With --train-top: also train this preset (M0..M5, at the space's resolution) with the same recipe, data and seeds, "
    "re-measure all interleaved and print who dominates it.",
)
@click.option(
    "--train-seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Seeds per model for --baseline (SEED, SEED+1, ...)."
)
@click.option(
    "--paired",
    is_flag=True,
    help="With a relative budget (the default for a new study): time each candidate in windows alternating with the budget's "
    "preset and judge it by their throughput ratio, so the machine's speed drift cancels (twice the timing work per candidate).",
)
@click.option(
    "--anchor",
    default=None,
    metavar="PRESET",
    help=f"With an absolute budget: time each candidate alternating with this preset (at the space's resolution; its figure "
    f"stored for the device, backend and protocol, the median of 3 runs the first time) and take ratio x its figure, as "
    f"--paired does for a relative budget [default for a new study: {DEFAULT_ANCHOR}].",
)
@click.option("--reanchor", is_flag=True, help="Measure the anchor's (or a relative budget's preset's) figure again for a new study.")
@click.option("--no-anchor", is_flag=True, help="Time each candidate alone (a plain single figure; noisier on a drifting machine).")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@predicted_options
def search_cmd(**opts) -> None:
    """Search the space for the most accurate models that meet a throughput budget on DEVICE.

    Trials are measured (throughput, in a Ray actor holding the device) before their proxy
    runs; candidates under the budget skip the proxy. With several --target, every candidate
    is measured on each target and must meet every budget; each target's figure is an
    objective. The study lives in the storage database: running the same command again resumes it.
    """
    from effvit_nas.measure.actor import LazyWorker
    from effvit_nas.search.loop import run_search

    if opts["trials"] is None and opts["timeout"] is None:
        raise click.UsageError("give --trials N or --timeout DURATION")
    if opts["baseline"] and not opts["train_top"]:
        raise UserError("--baseline needs --train-top K")
    check_training_flags(opts)
    specs = _apply_target(opts)
    split_budgets(opts)  # a comma list needs --strategy predicted
    if opts["strategy"] == "predicted":
        if specs:
            raise UserError("--strategy predicted takes one --target (several budgets: --budget A,B,C)")
        from effvit_nas.cli.search_predicted import search_predicted

        search_predicted(opts)
        return
    _set_metric(opts)
    options = _run_options(opts, specs)
    each = _target_opts(opts, specs)
    benches = [bench_settings(o["device"], o) for o in each]
    # one actor per device for the budgets and the search (targets on one device find the same by name)
    devices = [LazyWorker(o["device"], b, options.ray_address) for o, b in zip(each, benches, strict=True)]
    problem = _problem(opts, options, each, benches, devices)
    quiet = opts["quiet"] or opts["as_json"]
    if not quiet:
        click.echo(_header(problem, options, opts["data_source"]))
    if options.ray_address is not None:
        # on a cluster the search's actors are pinned to nodes, so the budget's actor is another
        # one: it would hold a CPU the proxies need (locally the search finds it by name)
        for device in devices:
            device.release()
    summary = run_search(problem, options, None if quiet else _progress(problem))
    for device in devices:
        device.release()  # before --train-top: training wants the CPUs the actor holds
    if opts["train_top"] and summary.interrupted:  # Ctrl-C means stop, not "go on to hours of training"
        click.echo("interrupted: --train-top skipped; run the same command again to resume", err=True)
    elif opts["train_top"]:
        if opts["baseline"]:
            summary.extra["comparison"] = compare_with_baseline(problem, options, opts, quiet)
        else:
            summary.extra["trained"] = train_best(problem, options, opts, quiet)
    if opts["as_json"]:
        print_json(asdict(summary))
    else:
        _print_summary(summary)
    if summary.interrupted:  # what finished is stored; the exit status still says the run was cut short
        click.get_current_context().exit(143 if summary.terminated else 130)


def _print_summary(summary) -> None:
    click.echo(
        f"{'interrupted: ' if summary.interrupted else ''}{summary.complete} complete ({summary.feasible} feasible), {summary.failed} failed; "
        f"{summary.skipped_predicted} skipped as predicted infeasible, audits right {summary.audit_correct}/{summary.audited}; {summary.seconds:.0f} s"
        + (f"; measured by {summary.measured_by}" if summary.measured_by else "")
    )
    if summary.model_spearman is not None:
        click.echo(
            f"throughput model: Spearman {summary.model_spearman:+.2f} between {summary.model_predictions} predictions "
            "and the measurements made after them"
        )
    print_trials(summary.pareto, title="Pareto set (feasible, non-dominated)")


def _apply_target(opts: dict) -> list:
    """The first ``--target`` as --device/--backend/--budget; returns every target when there
    are several (a multi-target study), else []. Without --target, --budget is needed."""
    from effvit_nas.search.targets import parse_targets

    if not opts["targets"]:
        if opts["budget"] is None:
            raise click.UsageError("give --budget BUDGET or --target DEVICE[/BACKEND]:BUDGET")
        return []
    if opts["budget"] is not None:
        raise click.UsageError("--target and --budget exclude each other (a target holds its budget)")
    with setting_flags({"Target": "--target"}):
        targets = parse_targets(opts["targets"], opts["metric"])
    t = targets[0]
    opts.update(device=t.device, backend=t.backend, budget=t.budget, metric=t.metric)
    return list(targets) if len(targets) > 1 else []


def _target_opts(opts: dict, targets: list) -> list[dict]:
    """The flags as each target sees them: its device, backend, budget and metric (a latency
    target times batch 1 whatever --batch says; --anchor applies to absolute budgets only)."""
    from effvit_nas.search.budget import parse_relative

    if not targets:
        return [opts]
    each = []
    for t in targets:
        o = {**opts, "device": t.device, "backend": t.backend, "budget": t.budget, "metric": t.metric}
        o["batch"] = None if t.metric == "latency" else opts["batch"]
        o["anchor"] = None if parse_relative(t.budget) is not None else opts["anchor"]
        o["spec"] = t.spec()
        each.append(o)
    return each


def _set_metric(opts: dict) -> None:
    """The study's metric in ``opts``: the budget's unit's (5ms latency, 10k-imgs/s throughput),
    or ``--metric`` for a relative budget (default throughput)."""
    from effvit_nas.search.budget import budget_metric

    with setting_flags({"BenchSettings.metric": "--metric", "SearchProblem.budget": "--budget"}):
        opts["metric"] = budget_metric(opts["budget"], opts["metric"])


def _problem(opts: dict, options, each: list[dict], benches: list, devices: list):
    """What the study is about, from the flags (a relative budget is resolved here, once per
    study and target: see effvit_nas.search.budget). ``each``: every target's flags."""
    from effvit_nas.arch.space import load_space
    from effvit_nas.data import check_data
    from effvit_nas.proxy.halving import Halving
    from effvit_nas.proxy.short_training import ShortTrainSettings
    from effvit_nas.search.loop import check_local_device
    from effvit_nas.search.problem import DEFAULT_PROXY, SearchProblem
    from effvit_nas.search.study import check_same_targets, stored_problem, target_specs

    stored = stored_problem(options)
    if stored is not None:  # before any budget is measured for a study that would be refused
        check_same_targets(options.study, target_specs(stored), [o["spec"] for o in each] if len(each) > 1 else [])
    # a study resumed without --proxy goes on with the proxy it was created with, whatever the default is now
    opts["proxy_name"] = opts["proxy_name"] or (stored or {}).get("proxy") or DEFAULT_PROXY
    if opts["halving"] and opts["proxy_name"] != "train":
        raise UserError(f"--halving applies to --proxy train, not {opts['proxy_name']}")
    space = load_space(opts["space"])
    proxy_def = _checked_proxy(opts, options, stored, space)
    if options.ray_address is None:  # before a relative budget starts Ray to measure its preset
        for o, bench in zip(each, benches, strict=True):
            check_local_device(o["device"], bench)
    elif stored is None:  # a cluster that does not answer must not leave behind an empty study
        from effvit_nas.measure.actor import connect

        connect(options.ray_address)
    data = data_config(opts)
    if stored is None:  # a typo in --data must not leave behind a study that then refuses the corrected command
        check_data(data)
    targets = [_target(i, o, b, d, options, stored, space) for i, (o, b, d) in enumerate(zip(each, benches, devices, strict=True))]
    t = targets[0]
    return SearchProblem(
        device=t.device,
        budget=t.budget,
        space=space.source,
        proxy=opts["proxy_name"],
        data=data,
        short_train=ShortTrainSettings(steps=opts["steps"], seed=opts["seed"]),
        bench=t.bench,
        budget_spec=t.budget_spec,
        budget_reference=t.budget_reference,
        halving=Halving(eta=opts["halving"]) if opts["halving"] else None,
        paired=t.paired,
        anchor=t.anchor,
        proxy_def=proxy_def,
        targets=tuple(targets) if len(targets) > 1 else (),
    )


def _target(index: int, opts: dict, bench, device, options, stored: dict | None, space):
    """Target ``index`` of the study (its budget resolved, its anchor and pairing decided as
    a single-target study's are); ``stored``: the study's stored problem, if it exists."""
    from effvit_nas.search.budget import study_budget
    from effvit_nas.search.problem import TargetProblem

    if index and stored is not None:  # a study of several targets stores each (CONTRACT.md)
        stored = stored["targets"][index]
    anchor = _anchor(opts, options, stored)
    budget = study_budget(
        opts["budget"], space, opts["device"], bench, options, device, anchor=anchor, reanchor=opts["reanchor"], target=index,
        scale=opts.get("scale"),
    )  # fmt: skip
    paired = opts["paired"] or anchor is not None or _paired_by_default(opts, stored)
    return TargetProblem(opts["device"], budget.images_per_s, bench, budget.spec, budget.reference, paired, anchor, opts.get("spec", ""))


def _paired_by_default(opts: dict, stored: dict | None) -> bool:
    """A relative budget pairs candidates with its preset unless --no-anchor; a study resumed
    goes on as it was created (one made before pairing was the default, unpaired)."""
    from effvit_nas.search.budget import parse_relative

    if opts["no_anchor"] or parse_relative(opts["budget"]) is None:
        return False
    return stored is None or bool(stored.get("paired"))


def _anchor(opts: dict, options, stored: dict | None) -> str | None:
    """``--anchor`` as a preset name (``DEFAULT_ANCHOR`` for a new study with an absolute
    budget, None with --no-anchor); like ``--proxy``, a study resumed without it goes on with
    the anchor it was created with. One created with another anchor, or without, is refused
    here, before the anchor would be measured for nothing."""
    from effvit_nas.search.budget import parse_relative

    had = (stored or {}).get("anchor")
    if opts["no_anchor"]:
        if opts["anchor"] or opts["paired"] or opts["reanchor"]:
            raise click.UsageError("--no-anchor excludes --anchor, --paired and --reanchor")
        if stored is not None and stored.get("paired"):
            raise UserError(f"study {options.study!r} was created anchored; use a new --study name to search with --no-anchor")
        return None
    if not opts["anchor"]:
        if parse_relative(opts["budget"]) is not None:
            return None
        return had if stored is not None else DEFAULT_ANCHOR
    anchor = opts["anchor"].upper()
    if stored is not None and had != anchor:
        was = f"with --anchor {had}" if had else "without --anchor"
        raise UserError(f"study {options.study!r} was created {was}; use a new --study name to search with --anchor {anchor}")
    return anchor


def _checked_proxy(opts: dict, options, stored: dict | None, space) -> str | None:
    """Canonicalise ``--proxy`` in ``opts``; returns the stored proxy definition when the
    proxy's files are gone but the study is finished: it scores no more candidates, and its
    --train-top / --baseline training must not need the supernet it was searched with."""
    from effvit_nas.proxy.registry import SUPERNET, check_proxy
    from effvit_nas.search.study import search_finished

    try:
        opts["proxy_name"] = check_proxy(opts["proxy_name"], space)
        return None
    except UserError as e:
        supernets = all(str(p).startswith(SUPERNET) for p in (opts["proxy_name"], (stored or {}).get("proxy")))
        if not (supernets and stored is not None and search_finished(options)):
            raise
        click.echo(f"note: {e}; study {options.study!r} has its {options.trials} trials, so it goes on without it", err=True)
        opts["proxy_name"] = stored["proxy"]
        return stored.get("proxy_def", stored["proxy"])


def _run_options(opts: dict, targets: list):
    """How this run goes, from the flags (``targets``: every one, when there are several)."""
    from effvit_nas.measure.store import default_storage, require_persistent
    from effvit_nas.search.budget import default_study_name, default_targets_name
    from effvit_nas.search.options import RunOptions, parse_duration

    storage = opts["storage"] or default_storage()
    require_persistent(storage)
    return RunOptions(
        study=opts["study_name"]
        or (default_targets_name([t.spec() for t in targets]) if targets else None)
        or default_study_name(opts["device"], opts["budget"], opts.get("metric") or "throughput"),
        storage=storage,
        trials=opts["trials"],
        timeout_s=parse_duration(opts["timeout"]) if opts["timeout"] else None,
        sampler=opts["sampler"],
        workers=opts["workers"],
        measure_actors=opts["measure_actors"],
        ray_address=opts["ray_address"],
        seed=opts["seed"],
        seed_presets=opts["seed_presets"],
        heartbeat_s=opts["heartbeat"],
    )


def _budget_text(t) -> str:
    """A target's budget as the header says it (``t``: a SearchProblem or a TargetProblem)."""
    budget = f"{t.budget:,.0f} img/s"
    if t.bench.metric == "latency":  # held as 1 / p50 at batch 1 (effvit_nas.search.budget)
        budget = f"p50 latency {1e3 / t.budget:.3g} ms (= {budget} at batch 1)"
    if t.budget_spec:
        preset = t.budget_spec.split("x")[-1]
        budget = f"{t.budget_spec} = {budget} ({preset} at the space's resolution measured {t.budget_reference:,.0f} img/s)"
        budget += f"; candidates paired with {preset}" if t.paired else ""
    elif t.anchor:
        budget += f"; candidates paired with anchor {t.anchor} (at the space's resolution measured {t.budget_reference:,.0f} img/s)"
    b = t.bench
    return (
        f"{budget} on {t.device} (batch {b.batch}, {b.precision}, {b.threads} thread(s), {b.backend}, malloc {b.malloc}, pages {b.pages})"
    )


def _header(problem, options, data_source: str) -> str:
    from effvit_nas.proxy.registry import IMAGE_FREE

    if problem.targets:
        budget = f"{len(problem.targets)} targets: " + "; ".join(f"{t.spec}: budget {_budget_text(t)}" for t in problem.targets)
    else:
        budget = f"budget {_budget_text(problem)}"
    # "macs on synthetic" read as if the search ran on fake images; macs reads none
    data = f"(reads no images, {problem.data.img_size} px)" if problem.proxy in IMAGE_FREE else f"on {data_source}"
    return f"study {options.study} in {options.storage}: {budget}; proxy {problem.proxy} {data}; sampler {options.sampler}"


def _progress(problem):
    """The per-trial progress line."""
    proxy, targets = problem.proxy, problem.targets

    def on_event(e) -> None:
        total = f"/{e.total}" if e.total else ""
        tp = f"{e.throughput:,.0f} img/s" if e.throughput is not None else "not measured"
        if targets and e.figures:  # each target's figure, measured or (skipped) predicted
            tp = ", ".join(f"{t.spec} {_figure_text(f, t.bench.metric)}" for t, f in zip(targets, e.figures, strict=True))
        acc = f", {proxy} {fmt_proxy(e.accuracy, proxy)}" if e.accuracy is not None else ""
        best = fmt_proxy(e.best_accuracy, proxy) if e.best_accuracy is not None else "-"
        note = f" [{e.note}]" if e.note else ""
        click.echo(
            f"[{e.done}{total}] trial {e.number} {e.config_hash} {e.state.lower()}: {tp}{acc}{note} | "
            f"feasible {e.feasible_count}, best under budget {best}, pareto {e.pareto_size}, ETA {fmt_eta(e.eta_s)}"
        )

    return on_event


def _figure_text(figure: float, metric: str) -> str:
    """A target's figure in its metric's unit: img/s, or a latency target's p50 in ms."""
    return f"{1e3 / figure:.3g} ms" if metric == "latency" else f"{figure:,.0f} img/s"
