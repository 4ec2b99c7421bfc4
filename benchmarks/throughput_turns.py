"""Ratio mode between models far apart in speed: equal iterations per turn, or equal time?
(results/throughput_turns_cpu.md)

`bench --relative-to` and `search --paired` alternate turns of the candidate and the
reference, each turn ``pair_iters`` (1) iterations of each model, so for M5 against M0
(2.4x apart at 64 px, 4.7x at 224 px) M0's turn is 2.4-4.7x shorter than M5's, and the ratio
of M5 to M0 repeated with CV 3.1-9.9 % against 1.1-1.4 % for M2/M0
(results/throughput_precision_cpu64.md, results/throughput_precision_cpu.md). ``balance``
(:func:`effvit_nas.measure.windows.turn_iters`) lets the faster model run as many iterations
as last about as long as the slower one's turn.

Each round measures every pair of ``--pairs`` once per mode, the modes' order alternating
between rounds, with the default CPU protocol (`BenchSettings.for_device("cpu")`), at 64 px
(the searches' resolution) and at the presets' own 224 px; quiet, and with a second process
spinning on one core (the other core of this 2-core VM). Reports, per pair, size, condition
and mode: the CV of the ratios over rounds, their median, the seconds per measurement and
the pairs of turns it held.

    uv run python benchmarks/throughput_turns.py --repeats 10

Status (2026-12-02, run on a quiet 2-core AMD EPYC VM): balanced turns repeated worse in three
of the four size/condition cells and alike in the fourth; ratio mode keeps one iteration of each model
per turn (``measure_ratio(balance=False)``, the default).

Claim reproduced (docs/results/measurement-noise.md): turns of equal length in ratio mode, not adopted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks._report import write_report

sys.path.insert(0, str(Path(__file__).parent))
from throughput_precision import condition, preset  # a sibling script, not a package

from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import measure_ratio

MODES = {"equal iterations": False, "balanced turns": True}


def rounds(repeats: int, pairs: list[tuple[str, str]], img_size: int, settings: BenchSettings, fp: dict) -> dict[str, list[dict]]:
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


def summary(rows: list[dict]) -> dict:
    ratios = [x["ratio"] for x in rows]
    return {
        "ratios": ratios,
        "median": statistics.median(ratios),
        "cv": statistics.stdev(ratios) / statistics.mean(ratios),
        "seconds_median": statistics.median(x["seconds"] for x in rows),
        "pairs_median": statistics.median(x["pairs"] for x in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--pairs", default="M5/M0", help="CANDIDATE/REFERENCE presets, comma-separated.")
    ap.add_argument("--img-sizes", default="64,224")
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_turns_cpu.md"))
    args = ap.parse_args()
    pairs = [tuple(p.split("/")) for p in args.pairs.split(",")]
    fp, s = fingerprint("cpu"), BenchSettings.for_device("cpu")
    results: dict[str, dict] = {}
    for cond in args.conditions.split(","):
        with condition(cond):
            for size in (int(x) for x in args.img_sizes.split(",")):
                print(f"== {cond}, {size} px", flush=True)
                for key, rows in rounds(args.repeats, pairs, size, s, fp).items():
                    results[f"{key} | {size} | {cond}"] = summary(rows)
    md = [
        "# Ratio mode: equal iterations per turn or turns of equal length (CPU)",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. Protocol: `bench --relative-to`'s default, "
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
    md += ["", f"Command: `uv run python benchmarks/throughput_turns.py --repeats {args.repeats}`"]
    write_report(args.out, "\n".join(md), {"device": fp, "settings": s.__dict__, "results": results})
    print("\n".join(md))


if __name__ == "__main__":
    main()
