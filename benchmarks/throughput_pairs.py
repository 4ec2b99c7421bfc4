"""Where does the spread of a CPU throughput figure come from, and which ratio estimator repeats best?

Times M0, M2 and M5 (default) alternately, one iteration of each in turn (the default CPU
protocol otherwise: batch 16, 1 thread, fp32, traced), in blocks of ``--block`` seconds, about
one ratio-mode measurement each. Blocks alternate between ``held`` models (built, traced and
warmed up once, before the first block) and ``fresh`` ones (built, traced and warmed up anew for
that block, as each `bench` or search measurement does), so drift of the machine reaches both
alike. Reports, for each kind of block, the CV over blocks of:

- each model's figure alone (median iteration of the block): the machine's drift;
- each model's throughput relative to the first model by several estimators on the same
  iterations: the ratio of the two models' block medians (what separate windows give), and the
  median, plain mean and 20 %-trimmed mean of the adjacent iterations' ratios (what
  :func:`effvit_nas.measure.windows.trimmed_log_mean` computes for ratio mode).

    uv run python benchmarks/throughput_pairs.py --blocks 20 --block 8 --out results/throughput_pairs_cpu.md

Claim reproduced (docs/results/measurement-noise.md): ratio mode's estimator (the pairs' trimmed mean).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import on_device, prepare, warm_up
from effvit_nas.measure.windows import trimmed_log_mean


def blocks(names: list[str], count: int, block_s: float, s: BenchSettings) -> list[dict]:
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


def cv(values: list[float]) -> float:
    v = np.asarray(values)
    return float(v.std(ddof=1) / v.mean())


ESTIMATORS = {
    "ratio of block medians": lambda a, b: float(np.median(a) / np.median(b)),
    "median of pair ratios": lambda a, b: float(np.median(a / b)),
    "mean of pair ratios": lambda a, b: float(np.exp(np.mean(np.log(a / b)))),
    "20 %-trimmed mean of pair ratios": lambda a, b: trimmed_log_mean(a / b)[0],
}


def analyse(data: list[dict], names: list[str], s: BenchSettings) -> dict:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="M0,M2,M5")
    ap.add_argument("--blocks", type=int, default=20, help="Blocks in all, half held, half fresh.")
    ap.add_argument("--block", type=float, default=8.0, help="Seconds per block (about one measurement's timed part).")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_pairs_cpu.md"))
    args = ap.parse_args()
    fp, s = fingerprint("cpu"), BenchSettings.for_device("cpu")
    names = args.models.split(",")
    result = analyse(blocks(names, args.blocks, args.block, s), names, s)
    ref = names[0]
    md = [
        "# Spread of CPU throughput figures: drift, builds, and which ratio estimator repeats best",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. {', '.join(names)} timed in turn, one "
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
    md += ["", f"Iterations of each model per block: {pairs}."]
    md += [
        "",
        f"Command: `uv run python benchmarks/throughput_pairs.py --models {args.models} --blocks {args.blocks} --block {args.block:g} --out {args.out}`",
    ]
    write_report(args.out, "\n".join(md), {"device": fp, "result": result})
    print("\n".join(md))


if __name__ == "__main__":
    main()
