"""Does fixing glibc's malloc thresholds make a throughput figure repeat? (results/throughput_malloc_cpu.md)

results/throughput_pinning_cpu.md found single measurements at one of two levels (M2: ~152 or
~124 img/s), with no disturbed window and whether the thread was pinned or not. Here each
process measures M0, M2 and M5 in rounds with `effvit-nas bench`'s default CPU protocol (the
same ``measure`` call), under ``malloc=system`` (glibc adapts its mmap threshold to the
process's history) or ``malloc=fixed`` (the thresholds fixed, effvit_nas/measure/heap.py).
The setting cannot be undone in a process, so each process runs one of them; processes
alternate between the two, so the machine's drift falls on both alike.

    uv run python benchmarks/throughput_malloc.py --processes 4 --rounds 3 --out results/throughput_malloc_cpu.md

Claim reproduced (docs/results/measurement-noise.md): the two levels are glibc's malloc thresholds (--malloc fixed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks._report import write_report
from effvit_nas.measure.settings import MALLOCS

MODELS = ("M0", "M2", "M5")


def child(malloc: str, rounds: int) -> None:
    """Runs in a fresh process: prints one JSON list of (model, img/s) per measurement."""
    from effvit_nas.arch.config import PRESETS
    from effvit_nas.measure.devices import fingerprint
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.measure.timing import measure

    fp, settings = fingerprint("cpu"), BenchSettings.for_device("cpu", malloc=malloc)
    out = [(m, measure(PRESETS[m], settings, "cpu", fp).throughput) for _ in range(rounds) for m in MODELS]
    print(json.dumps(out))


def run_processes(processes: int, rounds: int) -> dict[str, list[list]]:
    """``processes`` per setting, alternating system/fixed; their measurements by setting."""
    runs: dict[str, list[list]] = {m: [] for m in MALLOCS}
    for i in range(processes):
        for malloc in MALLOCS if i % 2 == 0 else MALLOCS[::-1]:
            cmd = [sys.executable, __file__, "--child", malloc, "--rounds", str(rounds)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs[malloc].append(json.loads(out))
            print(f"process {i} malloc={malloc}: " + " ".join(f"{m} {tp:.0f}" for m, tp in runs[malloc][-1]), flush=True)
    return runs


def table(runs: dict[str, list[list]]) -> list[str]:
    lines = ["| malloc | model | median img/s | CV over all measurements | range | measurements |", "|---|---|---|---|---|---|"]
    for malloc, procs in runs.items():
        for model in MODELS:
            tp = [t for p in procs for m, t in p if m == model]
            cv = statistics.stdev(tp) / statistics.mean(tp)
            lines.append(
                f"| {malloc} | {model} | {statistics.median(tp):.1f} | {100 * cv:.2f} % | {min(tp):.1f}-{max(tp):.1f} | {len(tp)} |"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=4, help="processes per setting (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of M0, M2, M5 per process (default 3)")
    ap.add_argument("--out", default="results/throughput_malloc_cpu.md")
    ap.add_argument("--child", choices=MALLOCS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return
    runs = run_processes(args.processes, args.rounds)
    md = [
        "# Fixing glibc's malloc thresholds while timing (default CPU protocol, M0/M2/M5 at 224 px)",
        "",
        f"{args.processes} processes per setting, alternating, each measuring M0, M2, M5 in {args.rounds} rounds with "
        "`effvit-nas bench`'s default CPU protocol (batch 16, 1 thread, fp32, traced, windows until ±1 % or 4 s).",
        "",
        *table(runs),
        "",
        "Per process (img/s, in measurement order):",
        "",
        *(f"- {malloc} {i}: " + ", ".join(f"{m} {t:.0f}" for m, t in p) for malloc, procs in runs.items() for i, p in enumerate(procs)),
        "",
        f"Command: `uv run python benchmarks/throughput_malloc.py --processes {args.processes} --rounds {args.rounds} --out {args.out}`",
        "",
    ]
    write_report(args.out, "\n".join(md), runs)
    print("\n".join(md))


if __name__ == "__main__":
    main()
