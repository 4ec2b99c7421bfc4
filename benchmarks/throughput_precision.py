"""How repeatable is one default throughput measurement, quiet and beside a busy process?

Measures M0..M5 (``--models``; at their own resolutions, or all at ``--img-size``) in rounds,
N rounds per condition, with the default CPU protocol of `effvit-nas bench` (batch 16, 1
thread, fp32, traced; 1.5 s warm-up, then 0.25 s windows until the 95 % interval is within
±1 % or 4 s have passed; disturbed windows left out), then each model but M0 in ratio mode
against M0 (`bench --relative-to M0`: single iterations in turn). Conditions: ``quiet``
(nothing else running) and ``busy`` (a second process spins on one core the whole time: the
other core of this 2-core VM). Reports, per model and condition, the CV of the N figures and
of the N ratios (targets: <= 2 % quiet, <= 3 % busy), the seconds per measurement (target
<= 10 s) and the disturbed windows; per round, whether the models came out in the paper's
order (M0 fastest), by figures and by ratios.

    uv run python benchmarks/throughput_precision.py --repeats 10 --out results/throughput_precision_cpu.md
    uv run python benchmarks/throughput_precision.py --repeats 10 --models M0,M2,M5 --img-size 64 --out results/throughput_precision_cpu64.md

Claim reproduced (docs/results/measurement-noise.md): single figures against ratio mode, at 224 px and at 64 px.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import MALLOCS, BenchSettings
from effvit_nas.measure.timing import measure, measure_ratio
from effvit_nas.measure.windows import FIGURE_QUANTILE

MODELS = ("M0", "M1", "M2", "M3", "M4", "M5")
RATIO_REFERENCE = "M0"  # every other model is also timed as a ratio to it
ESTIMATOR_QUANTILES = (0.5, 0.25, 0.1, 0.0)


def preset(name: str, img_size: int | None):
    """Preset ``name`` at its own resolution, or at ``img_size`` (a search space's)."""
    return PRESETS[name] if img_size is None else PRESETS[name].replace(img_size=img_size)


def rounds(repeats: int, settings: BenchSettings, fp: dict, models: tuple[str, ...], img_size: int | None) -> list[dict[str, dict]]:
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


def estimators(data: list[dict[str, dict]], models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """CV over rounds of other figures computed from the same windows: which window quantile
    (of seconds per iteration; 0 = the fastest window) repeats best."""
    out: dict[str, dict[str, float]] = {}
    for q in ESTIMATOR_QUANTILES:
        out[f"q{q:g}"] = {}
        for name in models:
            tp = [r[name]["batch"] / float(np.quantile(r[name]["window_times"], q)) for r in data]
            out[f"q{q:g}"][name] = statistics.stdev(tp) / statistics.mean(tp)
    return out


def spread(tp: list[float], sec: list[float]) -> dict:
    """Figures over rounds (img/s): their median and CV, with the seconds each took."""
    return {
        "throughput": tp,
        "median": statistics.median(tp),
        "cv": statistics.stdev(tp) / statistics.mean(tp),
        "seconds_median": statistics.median(sec),
        "seconds_max": max(sec),
    }


def summary(data: list[dict[str, dict]], models: tuple[str, ...]) -> dict:
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
            "cv": statistics.stdev(ratios) / statistics.mean(ratios),
            "separate": separate,
            "separate_cv": statistics.stdev(separate) / statistics.mean(separate),
            "seconds_median": statistics.median(r[f"{name}/{RATIO_REFERENCE}"]["seconds"] for r in data),
        }
    return out


def table(cond: str, s: dict, models: tuple[str, ...]) -> list[str]:
    lines = []
    for name in models:
        m = s["models"][name]
        lines.append(
            f"| {cond} | {name} | {m['median']:,.0f} | {100 * m['cv']:.2f} % | {min(m['throughput']):,.0f}-{max(m['throughput']):,.0f} "
            f"| {m['seconds_median']:.1f} s (max {m['seconds_max']:.1f}) | {m['disturbed']} of {m['windows']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument(
        "--models", default=",".join(MODELS), help=f"Presets, fastest first; the first is the ratios' reference ({RATIO_REFERENCE})."
    )
    ap.add_argument(
        "--img-size", type=int, default=None, help="Time every preset at this resolution (a search space's) [default: its own]."
    )
    ap.add_argument("--malloc", choices=MALLOCS, default="fixed", help="BenchSettings.malloc (default fixed, as `bench`)")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_precision_cpu.md"))
    args = ap.parse_args()
    models = tuple(args.models.split(","))
    if models[0] != RATIO_REFERENCE:
        ap.error(f"--models must start with the ratios' reference {RATIO_REFERENCE}")
    fp = fingerprint("cpu")
    s = BenchSettings.for_device("cpu", malloc=args.malloc)
    results = {}
    for cond in args.conditions.split(","):
        with condition(cond):
            results[cond] = summary(rounds(args.repeats, s, fp, models, args.img_size), models)
    md = [
        "# Repeatability and cost of one throughput measurement (CPU, default protocol)",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. Protocol: batch {s.batch}, "
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
    for cond, summ in results.items():
        md += table(cond, summ, models)
    md += [""]
    md += [
        "",
        "CV over rounds of figures taken from the same windows with another estimator (quantile q of the windows' seconds "
        f"per iteration; q0.5 = median; q0 = fastest window). The default is q{FIGURE_QUANTILE:g}.",
        "",
        "| condition | estimator | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for cond, summ in results.items():
        for est, cvs in summ["estimator_cv"].items():
            md.append(f"| {cond} | {est} | " + " | ".join(f"{100 * cvs[n]:.2f} %" for n in models) + " |")
    md += [
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
    flags = (
        (f" --models {args.models}" if models != MODELS else "")
        + (f" --img-size {args.img_size}" if args.img_size else "")
        + (f" --malloc {args.malloc}" if args.malloc != "fixed" else "")
    )
    md += ["", f"Command: `uv run python benchmarks/throughput_precision.py --repeats {args.repeats}{flags} --out {args.out}`"]
    write_report(args.out, "\n".join(md), {"device": fp, "settings": s.__dict__, "results": results})
    print("\n".join(md))


if __name__ == "__main__":
    main()
