"""How repeatable is one CPU throughput figure, why not, and what makes it repeat?

The measurement-noise investigations of docs/results/measurement-noise.md, one subcommand each;
every one writes its report through :func:`benchmarks._report.write_report`
(``results/NAME.md`` and ``.json``):

- ``precision``: single figures against ratio mode (`bench --relative-to`), quiet and busy;
- ``anchored``: anchored figures (`bench --anchor`) against single figures;
- ``build-spread``: is the spread the freshly built model, or the machine over time?
- ``pinning``: is it the CPU the timed thread runs on?
- ``malloc``: is it glibc's malloc thresholds (`--malloc fixed`)?
- ``pairs``: which ratio estimator over pairs of single iterations repeats best?
- ``turns``: ratio mode with turns of equal length, or one iteration each (not adopted)?

    uv run python benchmarks/measurement_noise.py precision --repeats 10 --out results/throughput_precision_cpu.md
    uv run python benchmarks/measurement_noise.py precision --repeats 10 --models M0,M2,M5 --img-size 64 --out results/throughput_precision_cpu64.md
    uv run python benchmarks/measurement_noise.py anchored --repeats 10
    uv run python benchmarks/measurement_noise.py build-spread --model M2 --rounds 10 --out results/throughput_build_spread.md
    uv run python benchmarks/measurement_noise.py pinning --repeats 5 --malloc system
    uv run python benchmarks/measurement_noise.py malloc --processes 4 --rounds 3
    uv run python benchmarks/measurement_noise.py pairs --blocks 20 --block 8
    uv run python benchmarks/measurement_noise.py turns --repeats 10

*quiet*: nothing else running; *busy*: a second process spins on one core the whole time (the
other core of the 2-core VM the reports were measured on). Timings taken beside other work are
polluted: run these on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.actor import get_worker, measure_configs
from effvit_nas.measure.anchor import how_measured, measure_anchored
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import MALLOCS, BenchSettings
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.measure.timing import measure, measure_ratio, on_device, prepare, time_forward, warm_up
from effvit_nas.measure.windows import FIGURE_QUANTILE, trimmed_log_mean

SCRIPT = "uv run python benchmarks/measurement_noise.py"
PRESET_NAMES = ("M0", "M1", "M2", "M3", "M4", "M5")


# ---------------------------------------------------------------- shared by the investigations


def preset(name: str, img_size: int | None):
    """Preset ``name`` at its own resolution, or at ``img_size`` (a search space's)."""
    return PRESETS[name] if img_size is None else PRESETS[name].replace(img_size=img_size)


def busy_process() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    """``quiet``: nothing added; ``busy``: :func:`busy_process` running (settled for 1 s)."""
    print(f"== {name}", flush=True)
    competitor = busy_process() if name == "busy" else None
    try:
        time.sleep(1.0 if competitor else 0.0)
        yield
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()


def cv(values: list[float], population: bool = False) -> float:
    """Coefficient of variation: the sample's (``population``: the population's) stdev over the mean."""
    return (statistics.pstdev(values) if population else statistics.stdev(values)) / statistics.mean(values)


def spread(tp: list[float], sec: list[float]) -> dict:
    """Figures over rounds (img/s): their median and CV, with the seconds each took."""
    return {
        "throughput": tp,
        "median": statistics.median(tp),
        "cv": cv(tp),
        "seconds_median": statistics.median(sec),
        "seconds_max": max(sec),
    }


def device_line(fp: dict) -> str:
    return f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}."


def finish(out: str | Path, md: list[str], record: Any) -> None:
    """Write the report and its record (``results/NAME.md`` and ``.json``); print the report."""
    write_report(out, "\n".join(md), record)
    print("\n".join(md))


def add_flags(
    p: argparse.ArgumentParser,
    out: str | None,
    *,
    repeats: int | None = None,
    models: str | None = None,
    models_help: str | None = None,
    conditions: bool = False,
    malloc: bool = False,
) -> None:
    """The flags the investigations share, each with its own default."""
    if repeats is not None:
        p.add_argument("--repeats", type=int, default=repeats, help=f"rounds (default {repeats})")
    if conditions:
        p.add_argument("--conditions", default="quiet,busy")
    if models is not None:
        p.add_argument("--models", default=models, help=models_help or f"presets, comma-separated (default {models})")
    if malloc:
        p.add_argument("--malloc", choices=MALLOCS, default="fixed", help="BenchSettings.malloc (default fixed, as `bench`)")
    p.add_argument("--out", type=Path, default=Path(out) if out else None)


def each_condition(conditions: str, run: Callable[[], Any]) -> dict[str, Any]:
    """``run()``'s result under each of the comma-separated conditions, in turn."""
    results = {}
    for cond in conditions.split(","):
        with condition(cond):
            results[cond] = run()
    return results


# ---------------------------------------------------------------- precision
# Measures M0..M5 (``--models``; at their own resolutions, or all at ``--img-size``) in rounds,
# N rounds per condition, with the default CPU protocol of `effvit-nas bench` (batch 16, 1
# thread, fp32, traced; 1.5 s warm-up, then 0.25 s windows until the 95 % interval is within
# ±1 % or 4 s have passed; disturbed windows left out), then each model but M0 in ratio mode
# against M0 (`bench --relative-to M0`: single iterations in turn). Reports, per model and
# condition, the CV of the N figures and of the N ratios (targets: <= 2 % quiet, <= 3 % busy),
# the seconds per measurement (target <= 10 s) and the disturbed windows; per round, whether the
# models came out in the paper's order (M0 fastest), by figures and by ratios.

RATIO_REFERENCE = "M0"  # every other model is also timed as a ratio to it
ESTIMATOR_QUANTILES = (0.5, 0.25, 0.1, 0.0)


def precision_rounds(
    repeats: int, settings: BenchSettings, fp: dict, models: tuple[str, ...], img_size: int | None
) -> list[dict[str, dict]]:
    """``repeats`` rounds, each measuring ``models`` once in order, then each but the first as a ratio to it."""
    out = []
    for r in range(repeats):
        row = {}
        for name in models:
            m = measure(preset(name, img_size), settings, "cpu", fp)
            row[name] = {
                "throughput": m.throughput,
                "seconds": m.seconds,
                "windows": m.windows,
                "disturbed": m.disturbed,
                "ci": [m.ci_low, m.ci_high],
                "window_times": m.window_times,
                "batch": m.batch,
            }
        for name in models[1:]:
            q = measure_ratio(preset(name, img_size), preset(RATIO_REFERENCE, img_size), settings, "cpu", fp)
            row[f"{name}/{RATIO_REFERENCE}"] = {"ratio": q.ratio, "ci": [q.ci_low, q.ci_high], "seconds": q.seconds, "pairs": q.pairs}
        print(f"round {r}: " + "  ".join(f"{n} {row[n]['throughput']:.0f}" for n in models), flush=True)
        out.append(row)
    return out


def estimators(data: list[dict[str, dict]], models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """CV over rounds of other figures computed from the same windows: which window quantile
    (of seconds per iteration; 0 = the fastest window) repeats best."""
    out: dict[str, dict[str, float]] = {}
    for q in ESTIMATOR_QUANTILES:
        out[f"q{q:g}"] = {}
        for name in models:
            out[f"q{q:g}"][name] = cv([r[name]["batch"] / float(np.quantile(r[name]["window_times"], q)) for r in data])
    return out


def precision_summary(data: list[dict[str, dict]], models: tuple[str, ...]) -> dict:
    per_model = {}
    for name in models:
        per_model[name] = {
            **spread([r[name]["throughput"] for r in data], [r[name]["seconds"] for r in data]),
            "disturbed": sum(r[name]["disturbed"] for r in data),
            "windows": sum(r[name]["windows"] for r in data),
        }
    in_order = [all(r[a]["throughput"] > r[b]["throughput"] for a, b in itertools.pairwise(models)) for r in data]
    ratio_order = [
        all(r[f"{a}/{RATIO_REFERENCE}"]["ratio"] > r[f"{b}/{RATIO_REFERENCE}"]["ratio"] for a, b in itertools.pairwise(models[1:]))
        for r in data
    ]
    return {
        "models": per_model,
        "paper_order": in_order,
        "paper_order_ratio": ratio_order,
        "estimator_cv": estimators(data, models),
        "ratios": ratio_summary(data, models),
    }


def ratio_summary(data: list[dict[str, dict]], models: tuple[str, ...]) -> dict[str, dict]:
    """Ratio mode against the same rounds' separate figures: CV over rounds of each."""
    out = {}
    for name in models[1:]:
        ratios = [r[f"{name}/{RATIO_REFERENCE}"]["ratio"] for r in data]
        separate = [r[name]["throughput"] / r[RATIO_REFERENCE]["throughput"] for r in data]
        out[name] = {
            "ratios": ratios,
            "cv": cv(ratios),
            "separate": separate,
            "separate_cv": cv(separate),
            "seconds_median": statistics.median(r[f"{name}/{RATIO_REFERENCE}"]["seconds"] for r in data),
        }
    return out


def precision_table(cond: str, s: dict, models: tuple[str, ...]) -> list[str]:
    lines = []
    for name in models:
        m = s["models"][name]
        lines.append(
            f"| {cond} | {name} | {m['median']:,.0f} | {100 * m['cv']:.2f} % | {min(m['throughput']):,.0f}-{max(m['throughput']):,.0f} "
            f"| {m['seconds_median']:.1f} s (max {m['seconds_max']:.1f}) | {m['disturbed']} of {m['windows']} |"
        )
    return lines


def precision_header(args: argparse.Namespace, fp: dict, s: BenchSettings, models: tuple[str, ...]) -> list[str]:
    return [
        "# Repeatability and cost of one throughput measurement (CPU, default protocol)",
        "",
        f"{device_line(fp)} Protocol: batch {s.batch}, "
        f"{s.precision}, {s.threads} thread, backend {s.backend}, malloc {s.malloc}, warm-up {s.warmup_s:g} s, then {s.window_s:g} s windows until the "
        f"95 % interval of the figure is within ±{100 * s.ci_target:g} % or {s.measure_s:g} s have passed; windows in which "
        "our thread ran < 95 % of the wall time or the hypervisor stole > 5 % are left out (disturbed).",
        f"{args.repeats} rounds per condition, each measuring {', '.join(models)} once"
        + (f" at {args.img_size} px" if args.img_size else " at their own resolutions")
        + ", then each but M0 as a ratio to M0, in one process. busy: a second Python process "
        "spins on one core throughout (this VM has 2).",
        "",
        "| condition | model | median img/s | CV over rounds | range | seconds per measurement | disturbed windows |",
        "|---|---|---|---|---|---|---|",
    ]


def precision_ratio_lines(results: dict, models: tuple[str, ...], s: BenchSettings) -> list[str]:
    md = [
        "",
        f"Ratio mode (`effvit-nas bench M2 --relative-to {RATIO_REFERENCE}`): the model and {RATIO_REFERENCE} timed alternately, "
        f"{s.pair_iters} iteration at a time, each warmed up for {s.warmup_s / 2:g} s, then pairs for up to {s.measure_s:g} s; the figure "
        "is the 20 %-trimmed mean of the pairs' log throughput ratios; against the ratio of the two separate figures of the same round.",
        "",
        f"| condition | model | ratio to {RATIO_REFERENCE}, median | CV over rounds | separate figures' ratio, CV | seconds per ratio |",
        "|---|---|---|---|---|---|",
    ]
    for cond, summ in results.items():
        for name, q in summ["ratios"].items():
            md.append(
                f"| {cond} | {name} | {statistics.median(q['ratios']):.3f} | {100 * q['cv']:.2f} % | {100 * q['separate_cv']:.2f} % "
                f"| {q['seconds_median']:.1f} s |"
            )
    md += [""]
    for cond, summ in results.items():
        order = summ["paper_order"]
        by_ratio = summ["paper_order_ratio"]
        md.append(
            f"- {cond}: {models[0]}..{models[-1]} in the paper's order ({models[0]} fastest) in {sum(order)} of {len(order)} rounds by their separate figures, "
            f"in {sum(by_ratio)} of {len(by_ratio)} by their ratios to {RATIO_REFERENCE}."
        )
    return md


def precision_report(args: argparse.Namespace, fp: dict, s: BenchSettings, models: tuple[str, ...], results: dict) -> list[str]:
    md = precision_header(args, fp, s, models)
    for cond, summ in results.items():
        md += precision_table(cond, summ, models)
    md += ["", ""]
    md += [
        "CV over rounds of figures taken from the same windows with another estimator (quantile q of the windows' seconds "
        f"per iteration; q0.5 = median; q0 = fastest window). The default is q{FIGURE_QUANTILE:g}.",
        "",
        "| condition | estimator | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for cond, summ in results.items():
        for est, cvs in summ["estimator_cv"].items():
            md.append(f"| {cond} | {est} | " + " | ".join(f"{100 * cvs[n]:.2f} %" for n in models) + " |")
    md += precision_ratio_lines(results, models, s)
    flags = (
        (f" --models {args.models}" if models != PRESET_NAMES else "")
        + (f" --img-size {args.img_size}" if args.img_size else "")
        + (f" --malloc {args.malloc}" if args.malloc != "fixed" else "")
    )
    return [*md, "", f"Command: `{SCRIPT} precision --repeats {args.repeats}{flags} --out {args.out}`"]


def run_precision(args: argparse.Namespace) -> None:
    models = tuple(args.models.split(","))
    if models[0] != RATIO_REFERENCE:
        args.parser.error(f"--models must start with the ratios' reference {RATIO_REFERENCE}")
    fp = fingerprint("cpu")
    s = BenchSettings.for_device("cpu", malloc=args.malloc)
    results = each_condition(
        args.conditions, lambda: precision_summary(precision_rounds(args.repeats, s, fp, models, args.img_size), models)
    )
    finish(args.out, precision_report(args, fp, s, models, results), {"device": fp, "settings": s.__dict__, "results": results})


# ---------------------------------------------------------------- anchored
# Single figures at the presets' own resolutions repeated with CV 2.6-5.2 % on the quiet 2-core
# VM, because the whole machine slowed for minutes (``precision``). An anchored figure is the
# model's ratio to an anchor preset, timed alternately, times the anchor's figure stored once
# (:mod:`effvit_nas.measure.anchor`). This runs the path `bench` runs (the device's Ray actor, a
# measurement store in a temporary SQLite file): the anchor is measured once (median of 3) at the
# start, then each round measures ``--models`` as plain single figures and as anchored figures,
# both re-timed (``fresh``), the two kinds' order alternating between rounds. Reports per
# condition and model: CV over rounds of both kinds, medians, seconds per measurement, and in how
# many rounds the models came out in the paper's order (M0 fastest).

KINDS = ("single", "anchored")


def anchored_rounds(
    repeats: int, models: tuple[str, ...], anchor: str, settings: BenchSettings, store: MeasurementStore, worker
) -> list[dict]:
    """Per round and kind, each model's figure (img/s) and the seconds it took, measured by ``worker`` (the device actor)."""
    cfgs = [PRESETS[m] for m in models]
    out = []
    for r in range(repeats):
        row: dict[str, dict] = {}
        for kind in KINDS if r % 2 == 0 else reversed(KINDS):
            if kind == "single":
                ms = measure_configs(cfgs, "cpu", settings, store, fresh=True, worker=worker)
            else:
                ms = measure_anchored(cfgs, PRESETS[anchor], "cpu", settings, store, fresh=True, worker=worker)[1]
            row[kind] = {
                n: {"throughput": m.throughput, "seconds": m.seconds, "disturbed": m.disturbed} for n, m in zip(models, ms, strict=True)
            }
        print(
            f"round {r}: " + "  ".join(f"{k} " + " ".join(f"{n} {row[k][n]['throughput']:.1f}" for n in models) for k in KINDS),
            flush=True,
        )
        out.append(row)
    return out


def anchored_summary(data: list[dict], models: tuple[str, ...]) -> dict:
    out: dict = {}
    for kind in KINDS:
        per = {}
        for n in models:
            per[n] = {
                **spread([r[kind][n]["throughput"] for r in data], [r[kind][n]["seconds"] for r in data]),
                "disturbed": sum(r[kind][n]["disturbed"] for r in data),
            }
        order = [all(r[kind][a]["throughput"] > r[kind][b]["throughput"] for a, b in itertools.pairwise(models)) for r in data]
        out[kind] = {"models": per, "paper_order": order}
    return out


def anchored_report(args, anchor_m, results: dict, models: tuple[str, ...], s: BenchSettings) -> list[str]:
    md = [
        "# Anchored figures against single figures (CPU, default protocol)",
        "",
        f"{device_line(anchor_m.device)} Protocol: batch {s.batch}, {s.precision}, "
        f"{s.threads} thread, backend {s.backend}, malloc {s.malloc}; presets at their own resolutions.",
        f"- single: `effvit-nas bench MODEL --fresh` (warm-up {s.warmup_s:g} s, {s.window_s:g} s windows until ±{100 * s.ci_target:g} % "
        f"or {s.measure_s:g} s).",
        f"- anchored: `effvit-nas bench MODEL --anchor {args.anchor} --fresh`: the model's ratio to {args.anchor} (timed alternately, "
        f"one iteration each, up to {s.measure_s:g} s) x {args.anchor}'s stored figure, {anchor_m.throughput:.1f} img/s "
        f"({how_measured(anchor_m)}, measured once at the start).",
        f"{args.repeats} rounds per condition, both kinds in each round, their order alternating. busy: a second Python process "
        "spins on one core throughout (this VM has 2).",
        "",
        "| condition | model | kind | median img/s | CV over rounds | range | seconds per measurement | disturbed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cond, summ in results.items():
        for n in models:
            for kind in KINDS:
                m = summ[kind]["models"][n]
                md.append(
                    f"| {cond} | {n} | {kind} | {m['median']:,.1f} | {100 * m['cv']:.2f} % | {min(m['throughput']):,.1f}-"
                    f"{max(m['throughput']):,.1f} | {m['seconds_median']:.1f} s (max {m['seconds_max']:.1f}) | {m['disturbed']} |"
                )
    md.append("")
    for cond, summ in results.items():
        md.append(
            f"- {cond}: {', '.join(models)} in the paper's order in "
            + " and ".join(f"{sum(summ[k]['paper_order'])} of {len(summ[k]['paper_order'])} rounds as {k} figures" for k in KINDS)
            + "."
        )
    flags = (f" --models {args.models}" if args.models != "M0,M2,M5" else "") + (f" --anchor {args.anchor}" if args.anchor != "M1" else "")
    return [*md, "", f"Command: `{SCRIPT} anchored --repeats {args.repeats}{flags} --out {args.out}`"]


def run_anchored(args: argparse.Namespace) -> None:
    models = tuple(args.models.split(","))
    if args.anchor in models:
        args.parser.error("--anchor must not be one of --models: its anchored figure would be its stored one")
    s = BenchSettings.for_device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        store = MeasurementStore(f"sqlite:///{tmp}/anchored.db")
        worker = get_worker("cpu", s)  # one actor for the whole run, as one `bench` command has
        anchor_m = measure_anchored([], PRESETS[args.anchor], "cpu", s, store, worker=worker)[0]
        print(f"anchor {args.anchor}: {anchor_m.throughput:.1f} img/s ({anchor_m.note})", flush=True)
        results = each_condition(
            args.conditions, lambda: anchored_summary(anchored_rounds(args.repeats, models, args.anchor, s, store, worker), models)
        )
    payload = {"device": anchor_m.device, "settings": s.__dict__, "anchor": anchor_m.to_dict(), "results": results}
    finish(args.out, anchored_report(args, anchor_m, results, models, s), payload)


# ---------------------------------------------------------------- build-spread
# Each round measures one preset three ways, interleaved so that the machine's drift over the
# round reaches all three alike, with the default CPU protocol's windows (batch 16, 1 thread,
# fp32, traced; 1.5 s warm-up, then up to 4 s of 0.25 s windows):
# - ``held``: one model, built and traced once before the first round, timed again each round;
# - ``fresh``: a model built and traced anew, timed once (what `bench` and the search do);
# - ``fresh xK``: K models built anew, each timed for 1/K of the time; the figure is the median
#   of all their windows (averaging over builds, as Stabilizer-style layout randomisation does).
# If fresh builds caused the spread, ``held`` would repeat better than ``fresh``, and ``fresh xK``
# better still; if the machine drifts, all three move together, so the ratio ``fresh / held``
# within a round repeats far better than either.

WAYS = ("held", "fresh", "fresh xK")


def _timed(measure_once: Callable[[], float]) -> tuple[float, float]:
    """``measure_once()``'s img/s and the seconds it took."""
    t0 = time.perf_counter()
    return measure_once(), time.perf_counter() - t0


def build_round(model: str, held: Callable[[], Any], settings: BenchSettings, builds: int, clocks: tuple) -> dict[str, tuple[float, float]]:
    """(img/s, seconds) of each way, measured in the order of ``WAYS``; ``held``: the forward pass built
    once, ``clocks``: :func:`on_device`'s (sync, iteration timer, CPU-time clock)."""
    sync, timer, cpu = clocks
    config, batch = PRESETS[model], settings.batch
    part = replace(settings, warmup_s=settings.warmup_s / builds, measure_s=settings.measure_s / builds, ci_target=0)

    def windows(forward: Callable[[], Any], s: BenchSettings) -> list[float]:
        return list(time_forward(forward, s, sync, timer, cpu).medians())

    def fresh(s: BenchSettings) -> list[float]:
        return windows(prepare(config, settings, "cpu", batch), s)

    def figure(medians: list[float]) -> float:
        return batch / float(np.median(medians))

    return {
        "held": _timed(lambda: figure(windows(held, settings))),
        "fresh": _timed(lambda: figure(fresh(settings))),
        "fresh xK": _timed(lambda: figure([t for _ in range(builds) for t in fresh(part)])),
    }


def build_report(model: str, rows: list[dict], builds: int, fp: dict, command: str) -> list[str]:
    lines = [
        f"# Spread of repeated throughput measurements: machine drift or fresh builds? ({model}, CPU)",
        "",
        f"{device_line(fp)} {len(rows)} rounds; each measures {model} three ways, interleaved,"
        f" with the default CPU protocol's windows (K = {builds}). See the benchmark's docstring.",
        "",
        "| way | median img/s | CV over rounds | range | seconds per measurement |",
        "|---|---|---|---|---|",
    ]
    for way in WAYS:
        v, s = [r[way][0] for r in rows], [r[way][1] for r in rows]
        name = way.replace("K", str(builds))
        lines.append(
            f"| {name} | {statistics.median(v):.0f} | {cv(v, population=True):.2%} | {min(v):.0f}-{max(v):.0f} | {statistics.median(s):.1f} |"
        )
    ratio = [r["fresh"][0] / r["held"][0] for r in rows]
    ratio_k = [r["fresh xK"][0] / r["held"][0] for r in rows]
    return [
        *lines,
        "",
        f"Within a round: fresh / held, CV over rounds {cv(ratio, population=True):.2%} (median {statistics.median(ratio):.3f});"
        f" fresh x{builds} / held, CV {cv(ratio_k, population=True):.2%} (median {statistics.median(ratio_k):.3f}).",
        "",
        "Per round (img/s): " + "; ".join(" / ".join(f"{r[w][0]:.0f}" for w in WAYS) for r in rows),
        "",
        f"Command: `{command}`",
        "",
    ]


def run_build_spread(args: argparse.Namespace) -> None:
    settings = BenchSettings(batch=16)
    fp = fingerprint("cpu")
    rows = []
    with on_device(settings, "cpu") as clocks:
        held = prepare(PRESETS[args.model], settings, "cpu", settings.batch)
        for i in range(args.rounds):
            rows.append(build_round(args.model, held, settings, args.builds, clocks))
            print(f"round {i}: " + "  ".join(f"{w} {rows[-1][w][0]:.0f}" for w in WAYS), flush=True)
    command = f"{SCRIPT} build-spread --model {args.model} --rounds {args.rounds} --builds {args.builds}"
    md = build_report(args.model, rows, args.builds, fp, command + (f" --out {args.out}" if args.out else ""))
    if args.out:
        finish(args.out, md, {"device": fp, "command": command, "rows": rows})
    else:
        print("\n".join(md))


# ---------------------------------------------------------------- malloc
# ``pinning`` found single measurements at one of two levels (M2: ~152 or ~124 img/s), with no
# disturbed window and whether the thread was pinned or not. Here each process measures M0, M2
# and M5 in rounds with `effvit-nas bench`'s default CPU protocol (the same ``measure`` call),
# under ``malloc=system`` (glibc adapts its mmap threshold to the process's history) or
# ``malloc=fixed`` (the thresholds fixed, effvit_nas/measure/heap.py). The setting cannot be
# undone in a process, so each process runs one of them; processes alternate between the two,
# so the machine's drift falls on both alike.

MALLOC_MODELS = ("M0", "M2", "M5")


def malloc_child(malloc: str, rounds: int) -> None:
    """Runs in a fresh process: prints one JSON list of (model, img/s) per measurement."""
    fp, settings = fingerprint("cpu"), BenchSettings.for_device("cpu", malloc=malloc)
    out = [(m, measure(PRESETS[m], settings, "cpu", fp).throughput) for _ in range(rounds) for m in MALLOC_MODELS]
    print(json.dumps(out))


def malloc_processes(processes: int, rounds: int) -> dict[str, list[list]]:
    """``processes`` per setting, alternating system/fixed; their measurements by setting."""
    runs: dict[str, list[list]] = {m: [] for m in MALLOCS}
    for i in range(processes):
        for malloc in MALLOCS if i % 2 == 0 else MALLOCS[::-1]:
            cmd = [sys.executable, __file__, "malloc", "--child", malloc, "--rounds", str(rounds)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs[malloc].append(json.loads(out))
            print(f"process {i} malloc={malloc}: " + " ".join(f"{m} {tp:.0f}" for m, tp in runs[malloc][-1]), flush=True)
    return runs


def malloc_table(runs: dict[str, list[list]]) -> list[str]:
    lines = ["| malloc | model | median img/s | CV over all measurements | range | measurements |", "|---|---|---|---|---|---|"]
    for malloc, procs in runs.items():
        for model in MALLOC_MODELS:
            tp = [t for p in procs for m, t in p if m == model]
            lines.append(
                f"| {malloc} | {model} | {statistics.median(tp):.1f} | {100 * cv(tp):.2f} % | {min(tp):.1f}-{max(tp):.1f} | {len(tp)} |"
            )
    return lines


def run_malloc(args: argparse.Namespace) -> None:
    if args.child:
        malloc_child(args.child, args.rounds)
        return
    runs = malloc_processes(args.processes, args.rounds)
    md = [
        "# Fixing glibc's malloc thresholds while timing (default CPU protocol, M0/M2/M5 at 224 px)",
        "",
        f"{args.processes} processes per setting, alternating, each measuring M0, M2, M5 in {args.rounds} rounds with "
        "`effvit-nas bench`'s default CPU protocol (batch 16, 1 thread, fp32, traced, windows until ±1 % or 4 s).",
        "",
        *malloc_table(runs),
        "",
        "Per process (img/s, in measurement order):",
        "",
        *(f"- {malloc} {i}: " + ", ".join(f"{m} {t:.0f}" for m, t in p) for malloc, procs in runs.items() for i, p in enumerate(procs)),
        "",
        f"Command: `{SCRIPT} malloc --processes {args.processes} --rounds {args.rounds} --out {args.out}`",
        "",
    ]
    finish(args.out, md, runs)


# ---------------------------------------------------------------- pairs
# Times M0, M2 and M5 (default) alternately, one iteration of each in turn (the default CPU
# protocol otherwise: batch 16, 1 thread, fp32, traced), in blocks of ``--block`` seconds, about
# one ratio-mode measurement each. Blocks alternate between ``held`` models (built, traced and
# warmed up once, before the first block) and ``fresh`` ones (built, traced and warmed up anew for
# that block, as each `bench` or search measurement does), so drift of the machine reaches both
# alike. Reports, for each kind of block, the CV over blocks of each model's figure alone (median
# iteration of the block: the machine's drift) and of each model's throughput relative to the
# first by several estimators on the same iterations: the ratio of the two models' block medians
# (what separate windows give), and the median, plain mean and 20 %-trimmed mean of the adjacent
# iterations' ratios (what :func:`effvit_nas.measure.windows.trimmed_log_mean` computes).


def pair_blocks(names: list[str], count: int, block_s: float, s: BenchSettings) -> list[dict]:
    """``count`` blocks, even ones on the held models, odd ones on fresh builds: per block its
    kind and, per model, the seconds of each of its iterations (the models taking turns)."""

    def build() -> dict:
        forwards = {n: prepare(PRESETS[n], s, "cpu", s.batch) for n in names}
        for f in forwards.values():
            warm_up(f, replace(s, warmup_s=s.warmup_s / 2), sync)
        return forwards

    out = []
    with on_device(s, "cpu") as (sync, timer, _):
        held = build()
        for i in range(count):
            forwards = held if i % 2 == 0 else build()
            times: dict[str, list[float]] = {n: [] for n in names}
            end = time.perf_counter() + block_s
            while time.perf_counter() < end:
                for n, f in forwards.items():
                    times[n].append(timer(f))
            out.append({"kind": "held" if i % 2 == 0 else "fresh", "times": {n: np.asarray(t) for n, t in times.items()}})
            print(f"block {i} ({out[-1]['kind']}): " + "  ".join(f"{n} {s.batch / np.median(t):.0f}" for n, t in times.items()), flush=True)
    return out


ESTIMATORS = {
    "ratio of block medians": lambda a, b: float(np.median(a) / np.median(b)),
    "median of pair ratios": lambda a, b: float(np.median(a / b)),
    "mean of pair ratios": lambda a, b: float(np.exp(np.mean(np.log(a / b)))),
    "20 %-trimmed mean of pair ratios": lambda a, b: trimmed_log_mean(a / b)[0],
}


def pairs_analyse(data: list[dict], names: list[str], s: BenchSettings) -> dict:
    ref = names[0]
    out: dict = {}
    for kind in ("held", "fresh"):
        got = [b["times"] for b in data if b["kind"] == kind]
        res: dict = {"blocks": len(got), "pairs_per_block": float(np.mean([len(t[ref]) for t in got])), "alone": {}, "ratios": {}}
        for n in names:
            figures = [s.batch / float(np.median(t[n])) for t in got]
            res["alone"][n] = {"median": float(np.median(figures)), "cv": cv(figures)}
        for n in names[1:]:
            # ref time / model time = the model's throughput relative to ref
            ratios = {e: [f(t[ref], t[n]) for t in got] for e, f in ESTIMATORS.items()}
            res["ratios"][n] = {e: cv(v) for e, v in ratios.items()} | {"median": float(np.median(ratios["median of pair ratios"]))}
        out[kind] = res
    return out


def pairs_report(args: argparse.Namespace, fp: dict, s: BenchSettings, names: list[str], result: dict) -> list[str]:
    ref = names[0]
    md = [
        "# Spread of CPU throughput figures: drift, builds, and which ratio estimator repeats best",
        "",
        f"{device_line(fp)} {', '.join(names)} timed in turn, one "
        f"iteration each (batch {s.batch}, {s.precision}, {s.threads} thread, backend {s.backend}), in {args.blocks} blocks of "
        f"{args.block:g} s, alternately on models built once (held) and built anew for the block (fresh). See the benchmark's docstring.",
        "",
        "| blocks | model | median img/s over blocks | CV over blocks |",
        "|---|---|---|---|",
    ]
    for kind, r in result.items():
        md += [f"| {kind} ({r['blocks']}) | {n} | {a['median']:,.0f} | {100 * a['cv']:.2f} % |" for n, a in r["alone"].items()]
    md += ["", f"CV over blocks of each model's throughput relative to {ref}, by estimator (same iterations):", ""]
    cols = [(kind, n) for kind in result for n in result[kind]["ratios"]]
    md += ["| estimator | " + " | ".join(f"{n} / {ref}, {kind}" for kind, n in cols) + " |", "|---|" + "---|" * len(cols)]
    for e in ESTIMATORS:
        md.append(f"| {e} | " + " | ".join(f"{100 * result[k]['ratios'][n][e]:.2f} %" for k, n in cols) + " |")
    md.append("| (median ratio) | " + " | ".join(f"{result[k]['ratios'][n]['median']:.3f}" for k, n in cols) + " |")
    pairs = ", ".join(f"{k} {r['pairs_per_block']:.1f}" for k, r in result.items())
    return [
        *md,
        "",
        f"Iterations of each model per block: {pairs}.",
        "",
        f"Command: `{SCRIPT} pairs --models {args.models} --blocks {args.blocks} --block {args.block:g} --out {args.out}`",
    ]


def run_pairs(args: argparse.Namespace) -> None:
    fp, s = fingerprint("cpu"), BenchSettings.for_device("cpu")
    names = args.models.split(",")
    result = pairs_analyse(pair_blocks(names, args.blocks, args.block, s), names, s)
    finish(args.out, pairs_report(args, fp, s, names, result), {"device": fp, "result": result})


# ---------------------------------------------------------------- pinning
# If the two virtual CPUs run at different speeds (each shares a physical core with other
# tenants), a thread that the scheduler moves between them would measure whichever CPU it was
# on. Here each model is measured with the default CPU protocol of `effvit-nas bench` (the same
# ``measure`` call) with the calling thread pinned to CPU 0, pinned to CPU 1, and free, in rounds
# whose order of conditions rotates, so slow drift of the machine falls on every condition alike.


def affinities() -> dict[str, set[int]]:
    """Affinity per condition: each CPU this process may use alone, then all of them."""
    cpus = sorted(os.sched_getaffinity(0))
    return {**{f"cpu {c}": {c} for c in cpus}, "free": set(cpus)}


def pinning_rounds(repeats: int, models: list[str], fp: dict, settings: BenchSettings) -> list[dict]:
    """One record per measurement; the conditions' order rotates from round to round."""
    conds = affinities()
    names = list(conds)
    records = []
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for model in models:
            for cond in order:
                os.sched_setaffinity(0, conds[cond])  # pid 0: this thread, which runs the single-threaded forward
                m = measure(PRESETS[model], settings, "cpu", fp)
                records.append(
                    {
                        "round": r,
                        "model": model,
                        "condition": cond,
                        "throughput": m.throughput,
                        "seconds": m.seconds,
                        "disturbed": m.disturbed,
                        "windows": m.windows,
                        "at": time.time(),
                    }
                )
                print(
                    f"round {r} {model:3s} {cond:6s} {m.throughput:8.1f} img/s ({m.seconds:.1f} s, {m.disturbed}/{m.windows} disturbed)",
                    flush=True,
                )
    os.sched_setaffinity(0, conds["free"])
    return records


def pinning_table(records: list[dict], models: list[str]) -> list[str]:
    """Median, CV and range per model and condition."""
    lines = ["| model | condition | median img/s | CV over rounds | range | disturbed windows |", "|---|---|---|---|---|---|"]
    for model in models:
        for cond in affinities():
            rs = [r for r in records if r["model"] == model and r["condition"] == cond]
            tp = [r["throughput"] for r in rs]
            c = cv(tp) if len(tp) > 1 else float("nan")
            dist = f"{sum(r['disturbed'] for r in rs)} of {sum(r['windows'] for r in rs)}"
            lines.append(f"| {model} | {cond} | {statistics.median(tp):.1f} | {100 * c:.2f} % | {min(tp):.1f}-{max(tp):.1f} | {dist} |")
    return lines


def cpu_ratios(records: list[dict], models: list[str]) -> list[str]:
    """Per model, CPU 0's figure over CPU 1's in each round: does one CPU run faster throughout?"""
    lines = []
    for model in models:
        by = {(r["round"], r["condition"]): r["throughput"] for r in records if r["model"] == model}
        ratios = [by[k, "cpu 0"] / by[k, "cpu 1"] for k in sorted({k for k, _ in by}) if (k, "cpu 0") in by and (k, "cpu 1") in by]
        if ratios:
            lines.append(f"- {model}: cpu 0 / cpu 1 per round " + ", ".join(f"{x:.3f}" for x in ratios))
    return lines


def run_pinning(args: argparse.Namespace) -> None:
    models = args.models.split(",")
    fp = fingerprint("cpu")
    settings = BenchSettings.for_device("cpu", malloc=args.malloc)
    records = pinning_rounds(args.repeats, models, fp, settings)
    cmd = f"{SCRIPT} pinning --repeats {args.repeats} --models {args.models} --malloc {args.malloc} --out {args.out}"
    md = [
        "# Pinning the timed thread to one CPU (default CPU protocol)",
        "",
        f"Device: {fp.get('name', 'cpu')}, {len(affinities()) - 1} CPUs. Each model measured with `effvit-nas bench`'s default CPU protocol ({settings.batch} images per batch, 1 thread, 224 px, malloc {settings.malloc}), "
        f"pinned to each CPU and free, {args.repeats} rounds, the order of conditions rotating per round.",
        "",
        *pinning_table(records, models),
        "",
        *cpu_ratios(records, models),
        "",
        f"Command: `{cmd}`",
        "",
    ]
    finish(args.out, md, {"device": fp, "records": records})


# ---------------------------------------------------------------- turns
# `bench --relative-to` and `search --paired` alternate turns of the candidate and the reference,
# each turn ``pair_iters`` (1) iterations of each model, so for M5 against M0 (2.4x apart at
# 64 px, 4.7x at 224 px) M0's turn is 2.4-4.7x shorter than M5's. ``balance``
# (:func:`effvit_nas.measure.windows.turn_iters`) lets the faster model run as many iterations as
# last about as long as the slower one's turn. Each round measures every pair of ``--pairs`` once
# per mode, the modes' order alternating between rounds, at 64 px (the searches' resolution) and
# at the presets' own 224 px. Status (2026-12-02, quiet 2-core AMD EPYC VM): balanced turns
# repeated worse in three of the four size/condition cells and alike in the fourth; ratio mode
# keeps one iteration of each model per turn (``measure_ratio(balance=False)``, the default).

MODES = {"equal iterations": False, "balanced turns": True}


def turns_rounds(repeats: int, pairs: list[tuple[str, str]], img_size: int, settings: BenchSettings, fp: dict) -> dict[str, list[dict]]:
    """``{"CANDIDATE/REFERENCE mode": [per round: ratio, its interval, seconds, pairs of turns]}``."""
    out: dict[str, list[dict]] = {}
    for r in range(repeats):
        order = list(MODES.items()) if r % 2 == 0 else list(reversed(MODES.items()))
        for cand, ref in pairs:
            for mode, balance in order:
                q = measure_ratio(preset(cand, img_size), preset(ref, img_size), settings, "cpu", fp, balance=balance)
                out.setdefault(f"{cand}/{ref} {mode}", []).append(
                    {"ratio": q.ratio, "seconds": q.seconds, "pairs": q.pairs, "ci": [q.ci_low, q.ci_high]}
                )
        print(f"{img_size} px round {r}: " + "  ".join(f"{k} {v[-1]['ratio']:.3f}" for k, v in out.items()), flush=True)
    return out


def turns_summary(rows: list[dict]) -> dict:
    ratios = [x["ratio"] for x in rows]
    return {
        "ratios": ratios,
        "median": statistics.median(ratios),
        "cv": cv(ratios),
        "seconds_median": statistics.median(x["seconds"] for x in rows),
        "pairs_median": statistics.median(x["pairs"] for x in rows),
    }


def turns_report(args: argparse.Namespace, fp: dict, s: BenchSettings, results: dict) -> list[str]:
    md = [
        "# Ratio mode: equal iterations per turn or turns of equal length (CPU)",
        "",
        f"{device_line(fp)} Protocol: `bench --relative-to`'s default, "
        f"batch {s.batch}, {s.precision}, {s.threads} thread, backend {s.backend}, each model warmed up {s.warmup_s / 2:g} s, then "
        f"pairs of turns until the 95 % interval is within ±{100 * s.ci_target:g} % or {s.measure_s:g} s have passed. "
        f"{args.repeats} rounds per size and condition, each measuring every pair once per mode (the modes' order alternating "
        "by round), in one process. busy: a second Python process spins on one core throughout.",
        "",
        "| pair | mode | px | condition | median ratio | CV over rounds | seconds per measurement | pairs of turns (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        pair_mode, size, cond = key.split(" | ")
        pair, mode = pair_mode.split(" ", 1)
        md.append(
            f"| {pair} | {mode} | {size} | {cond} | {r['median']:.3f} | {100 * r['cv']:.2f} % | {r['seconds_median']:.1f} s "
            f"| {r['pairs_median']:.0f} |"
        )
    return [*md, "", f"Command: `{SCRIPT} turns --repeats {args.repeats}`"]


def run_turns(args: argparse.Namespace) -> None:
    pairs = [tuple(p.split("/")) for p in args.pairs.split(",")]
    fp, s = fingerprint("cpu"), BenchSettings.for_device("cpu")
    results: dict[str, dict] = {}
    for cond in args.conditions.split(","):
        with condition(cond):
            for size in (int(x) for x in args.img_sizes.split(",")):
                print(f"== {cond}, {size} px", flush=True)
                for key, rows in turns_rounds(args.repeats, pairs, size, s, fp).items():
                    results[f"{key} | {size} | {cond}"] = turns_summary(rows)
    finish(args.out, turns_report(args, fp, s, results), {"device": fp, "settings": s.__dict__, "results": results})


# ---------------------------------------------------------------- the command line


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="investigation", required=True)

    def investigation(name: str, run: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run, parser=p)
        return p

    p = investigation("precision", run_precision, "Single figures against ratio mode, quiet and busy.")
    add_flags(
        p, "results/throughput_precision_cpu.md", repeats=10, conditions=True, malloc=True, models=",".join(PRESET_NAMES),
        models_help=f"Presets, fastest first; the first is the ratios' reference ({RATIO_REFERENCE}).",
    )  # fmt: skip
    p.add_argument("--img-size", type=int, default=None, help="Time every preset at this resolution (a search space's) [default: its own].")

    p = investigation("anchored", run_anchored, "Anchored figures (`bench --anchor`) against single figures.")
    add_flags(
        p, "results/throughput_anchored_cpu.md", repeats=10, conditions=True, models="M0,M2,M5", models_help="Presets, fastest first."
    )
    p.add_argument("--anchor", default="M1", help="The anchor preset (default M1: between the models, and not one of them).")

    p = investigation("build-spread", run_build_spread, "Machine drift or fresh builds: one model held, built anew, built K times.")
    p.add_argument("--model", default="M2", choices=sorted(PRESETS))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--builds", type=int, default=4, help="K: builds sharing one measurement's time (default 4)")
    add_flags(p, None)

    p = investigation("pinning", run_pinning, "The timed thread pinned to each CPU, and free.")
    add_flags(p, "results/throughput_pinning_cpu.md", repeats=5, models="M0,M2,M5", malloc=True)

    p = investigation("malloc", run_malloc, "glibc's malloc thresholds fixed or adaptive, one process per setting.")
    p.add_argument("--processes", type=int, default=4, help="processes per setting (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of M0, M2, M5 per process (default 3)")
    add_flags(p, "results/throughput_malloc_cpu.md")
    p.add_argument("--child", choices=MALLOCS, help=argparse.SUPPRESS)

    p = investigation("pairs", run_pairs, "Which ratio estimator over pairs of single iterations repeats best.")
    add_flags(p, "results/throughput_pairs_cpu.md", models="M0,M2,M5")
    p.add_argument("--blocks", type=int, default=20, help="Blocks in all, half held, half fresh.")
    p.add_argument("--block", type=float, default=8.0, help="Seconds per block (about one measurement's timed part).")

    p = investigation("turns", run_turns, "Ratio mode with turns of equal length, or one iteration each.")
    add_flags(p, "results/throughput_turns_cpu.md", repeats=10, conditions=True)
    p.add_argument("--pairs", default="M5/M0", help="CANDIDATE/REFERENCE presets, comma-separated.")
    p.add_argument("--img-sizes", default="64,224")
    return ap


def main() -> None:
    args = parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
