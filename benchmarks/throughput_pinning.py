"""Does pinning the timed thread to one CPU make a throughput figure repeat? (results/throughput_pinning_cpu.md)

A diagnostic for the measurement issue: results/throughput_precision_cpu.md shows CVs of 6-17 %
over rounds on this 2-core VM, and the protocol does not pin its thread. If the two virtual
CPUs run at different speeds (each shares a physical core with other tenants), a thread that
the scheduler moves between them would measure whichever CPU it was on. Here each model is
measured with the default CPU protocol of `effvit-nas bench` (the same ``measure`` call) with
the calling thread pinned to CPU 0, pinned to CPU 1, and free, in rounds whose order of
conditions rotates, so slow drift of the machine falls on every condition alike.

    uv run python benchmarks/throughput_pinning.py --repeats 5 --malloc system --out results/throughput_pinning_cpu.md

Claim reproduced (docs/results/measurement-noise.md): the spread is not the CPU the thread runs on; two speed levels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import MALLOCS, BenchSettings
from effvit_nas.measure.timing import measure


def conditions() -> dict[str, set[int]]:
    """Affinity per condition: each CPU this process may use alone, then all of them."""
    cpus = sorted(os.sched_getaffinity(0))
    return {**{f"cpu {c}": {c} for c in cpus}, "free": set(cpus)}


def rounds(repeats: int, models: list[str], fp: dict, settings: BenchSettings) -> list[dict]:
    """One record per measurement; the conditions' order rotates from round to round."""
    conds = conditions()
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


def table(records: list[dict], models: list[str]) -> list[str]:
    """Median, CV and range per model and condition."""
    lines = ["| model | condition | median img/s | CV over rounds | range | disturbed windows |", "|---|---|---|---|---|---|"]
    for model in models:
        for cond in conditions():
            rs = [r for r in records if r["model"] == model and r["condition"] == cond]
            tp = [r["throughput"] for r in rs]
            cv = statistics.stdev(tp) / statistics.mean(tp) if len(tp) > 1 else float("nan")
            dist = f"{sum(r['disturbed'] for r in rs)} of {sum(r['windows'] for r in rs)}"
            lines.append(f"| {model} | {cond} | {statistics.median(tp):.1f} | {100 * cv:.2f} % | {min(tp):.1f}-{max(tp):.1f} | {dist} |")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--models", default="M0,M2,M5", help="presets, comma-separated (default M0,M2,M5)")
    ap.add_argument("--malloc", choices=MALLOCS, default="fixed", help="BenchSettings.malloc (default fixed, as `bench`)")
    ap.add_argument("--out", default="results/throughput_pinning_cpu.md")
    args = ap.parse_args()
    models = args.models.split(",")
    fp = fingerprint("cpu")
    settings = BenchSettings.for_device("cpu", malloc=args.malloc)
    records = rounds(args.repeats, models, fp, settings)
    cmd = f"uv run python benchmarks/throughput_pinning.py --repeats {args.repeats} --models {args.models} --malloc {args.malloc} --out {args.out}"
    out = [
        "# Pinning the timed thread to one CPU (default CPU protocol)",
        "",
        f"Device: {fp.get('name', 'cpu')}, {len(conditions()) - 1} CPUs. Each model measured with `effvit-nas bench`'s default CPU protocol ({settings.batch} images per batch, 1 thread, 224 px, malloc {settings.malloc}), "
        f"pinned to each CPU and free, {args.repeats} rounds, the order of conditions rotating per round.",
        "",
        *table(records, models),
        "",
        *cpu_ratios(records, models),
        "",
        f"Command: `{cmd}`",
        "",
    ]
    write_report(args.out, "\n".join(out), {"device": fp, "records": records})
    print("\n".join(out))


if __name__ == "__main__":
    main()
