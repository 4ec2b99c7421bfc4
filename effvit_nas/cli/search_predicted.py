"""`search --strategy predicted`: the search on the target's predictors, measuring only their
shortlist (:mod:`effvit_nas.predict.specialise`), one study per budget of ``--budget M0,M1``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click

from effvit_nas.cli.common import bench_settings, print_json
from effvit_nas.errors import UserError

STRATEGIES = ("measure", "predicted")


def predicted_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`search`'s --strategy and the flags only the predicted strategy reads."""
    f = click.option(
        "--calibration-archs",
        type=click.IntRange(min=2),
        default=40,
        show_default=True,
        help="With --strategy predicted and no stored predictor for the target: space samples of the calibration (as profile --archs).",
    )(f)
    f = click.option(
        "--round-size",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="With --strategy predicted: the most shortlisted architectures a round measures (largest predicted hypervolume gain first) before the refit.",
    )(f)
    f = click.option(
        "--candidates",
        type=click.IntRange(min=1),
        default=10_000,
        show_default=True,
        help="With --strategy predicted: NSGA-II trials on the predictors per round.",
    )(f)
    return click.option(
        "--strategy",
        type=click.Choice(STRATEGIES),
        default="measure",
        show_default=True,
        help="measure: every candidate is measured and scored; predicted: NSGA-II on the target's efficiency predictor "
        "(calibrated first if none is stored) and the proxy's, then only the predicted front and the candidates within the "
        "predictors' error of it are measured and scored, refitting between rounds; --budget may then be a comma list "
        "(one study per budget, from one calibration). Proxies: macs, params.",
    )(f)


def split_budgets(opts: dict[str, Any]) -> list[str]:
    """The budgets of ``--budget A,B`` (one for a plain budget); refused with --strategy measure."""
    budgets = [b.strip() for b in (opts["budget"] or "").split(",")]
    if len(budgets) > 1 and opts["strategy"] != "predicted":
        raise UserError(f"--budget {opts['budget']!r} names several budgets: one study per budget needs --strategy predicted")
    if len(budgets) > 1 and (not all(budgets) or len(set(budgets)) < len(budgets)):
        raise UserError(f"--budget {opts['budget']!r}: give distinct budgets separated by commas, e.g. M0,M1,M2")
    return budgets


def search_predicted(opts: dict[str, Any]) -> None:
    """The predicted strategy, from `search`'s flags (cli.search validated the common ones)."""
    from effvit_nas.arch.space import load_space
    from effvit_nas.cli.search import _header, _print_summary, _progress
    from effvit_nas.predict.specialise import PoolSettings, specialise

    for flag in ("train_top", "halving", "ray_address"):
        if opts[flag]:
            raise UserError(f"--{flag.replace('_', '-')} is not supported with --strategy predicted yet")
    if opts["no_anchor"]:  # plain figures beside the calibration's anchored ones would be two scales in one refit
        raise UserError("--no-anchor is not supported with --strategy predicted: its figures are anchored to its calibration's M0")
    _check_proxy(opts["proxy_name"])
    runs, device = _budget_runs(opts)
    space = load_space(runs[0].problem.space)
    quiet = opts["quiet"] or opts["as_json"]
    if not quiet:
        for run in runs:
            click.echo(_header(run.problem, run.options, opts["data_source"]))
    target = _target(opts, runs[0], space, quiet)
    accuracy = _accuracy(runs[0].problem)
    pool = PoolSettings(candidates=opts["candidates"], seed=opts["seed"], round_size=opts["round_size"])
    note = (lambda _: None) if quiet else click.echo
    summaries = specialise(runs, space, target, accuracy, pool, note, lambda p: None if quiet else _progress(p))
    device.release()
    if opts["as_json"]:
        print_json([asdict(s) for s in summaries.values()])
    else:
        for name, s in summaries.items():
            click.echo(f"study {name}:")
            _print_summary(s)
    if any(s.interrupted for s in summaries.values()):
        click.get_current_context().exit(143 if any(s.terminated for s in summaries.values()) else 130)


def _check_proxy(proxy: str | None) -> None:
    """A proxy the predicted strategy has no predictor for fails before anything is measured."""
    from effvit_nas.predict.specialise import check_proxy_supported
    from effvit_nas.search.problem import DEFAULT_PROXY

    check_proxy_supported(proxy or DEFAULT_PROXY)


def _budget_runs(opts: dict[str, Any]) -> tuple[list, Any]:
    """One (problem, options) per budget: study names as `search` makes them per budget, or
    ``--study NAME`` with ``-<budget>`` appended when there are several; and the device actor
    (lazy) that measured the budgets' presets, which the search goes on with."""
    from effvit_nas.cli.search import _problem, _run_options, _set_metric
    from effvit_nas.measure.actor import LazyWorker
    from effvit_nas.measure.settings import DEFAULT_ANCHOR
    from effvit_nas.predict.specialise import BudgetRun

    budgets = split_budgets(opts)
    runs, metrics = [], set()
    device = LazyWorker(opts["device"], bench_settings(opts["device"], opts))  # one actor for every budget's preset
    for i, b in enumerate(budgets):
        name = opts["study_name"] and (f"{opts['study_name']}-{b}" if len(budgets) > 1 else opts["study_name"])
        # every budget on the calibration's scale (the search pools their figures in one refit),
        # whose anchor --reanchor measures once, not once per budget
        o = {**opts, "budget": b, "study_name": name, "scale": DEFAULT_ANCHOR, "reanchor": opts["reanchor"] and not i}
        _set_metric(o)
        metrics.add(o["metric"])
        if len(metrics) > 1:
            raise UserError(f"--budget {opts['budget']!r} mixes metrics ({' and '.join(sorted(metrics))}): give budgets of one unit")
        options = _run_options(o, [])
        runs.append(BudgetRun(_problem(o, options, [o], [bench_settings(o["device"], o)], [device]), options))
        _check_proxy(o["proxy_name"])  # a resumed study's own proxy
    return runs, device


def _target(opts: dict[str, Any], run, space, quiet: bool):
    """The stored efficiency predictor of the study's device, protocol, metric and space, or
    one calibrated now (said on stderr) through `profile`'s code."""
    from effvit_nas.measure.actor import check_local
    from effvit_nas.measure.settings import DEFAULT_ANCHOR
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.predict.calibration import calibration_set
    from effvit_nas.predict.features import BEST
    from effvit_nas.predict.profile import profile_lines, run_profile
    from effvit_nas.predict.specialise import TargetPredictor
    from effvit_nas.predict.store import PredictorStore

    bench, url = run.problem.bench, run.options.storage
    fp = check_local(opts["device"], bench)
    found = PredictorStore(url).find(fp["id"], bench.key(), bench.metric, space.name)
    scale = f"{DEFAULT_ANCHOR}@{max(space.img_sizes)}px"  # what the budgets' figures are anchored to
    if found and found[0].get("anchor") != scale:
        had = f"anchored to {found[0]['anchor']}" if found[0].get("anchor") else "plain (not anchored)"
        raise UserError(
            f"the efficiency profile stored in {url} for this target has figures {had}, and the predicted search "
            f"measures on {DEFAULT_ANCHOR}'s scale: run `effvit-nas profile --space {space.name} --anchor {DEFAULT_ANCHOR}` first"
        )
    if found:
        if not quiet:
            click.echo(f"efficiency predictor: the profile fitted {found[0]['fitted_at']} in {url}")
        return TargetPredictor(found[0], space, url)
    click.echo(
        f"note: no efficiency predictor stored for {opts['device']} [{fp['id']}], protocol {bench.key()}, {bench.metric}, "
        f"space {space.name} in {url}: calibrating one first (as `effvit-nas profile --space {space.name} "
        f"--archs {opts['calibration_archs']}`)",
        err=True,
    )
    items = calibration_set(space, opts["calibration_archs"], opts["seed"])
    fit = (0, 5, opts["seed"], BEST)
    record = run_profile(space, items, opts["device"], bench, MeasurementStore(url), DEFAULT_ANCHOR, fit)
    if not quiet:
        click.echo("\n".join(profile_lines(record)))
    return TargetPredictor(record, space, url)


def _accuracy(problem):
    """The proxy's predictor at the proxy's resolution and classes (those of its data)."""
    from effvit_nas.data import load_data
    from effvit_nas.predict.specialise import proxy_predictor

    classes = problem.data.num_classes or load_data(problem.data).num_classes
    return proxy_predictor(problem.proxy, problem.data.img_size, classes)
