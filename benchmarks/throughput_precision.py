"""How repeatable is one default throughput measurement, and what does it cost?

Measures the same configs N times with the default CPU protocol of `effvit-nas bench`
(batch 16, 1 thread, fp32, traced, 1.5 s warm-up + 4 s timed) and reports the CV of the
N medians (target <= 2 %) and the seconds each measurement took (target <= 10 s).

    uv run python benchmarks/throughput_precision.py --repeats 5 --out results/throughput_precision_cpu.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="M0,M2,M5")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_precision_cpu.md"))
    args = ap.parse_args()
    fp = fingerprint("cpu")
    s = BenchSettings.for_device("cpu")
    rows, data = [], {}
    for n in args.models.split(","):
        ms = [measure(PRESETS[n], s, "cpu", fp) for _ in range(args.repeats)]
        tp = [m.throughput for m in ms]
        cv = statistics.stdev(tp) / statistics.mean(tp)
        sec = [m.seconds for m in ms]
        data[n] = {"throughput": tp, "seconds": sec, "cv_of_medians": cv, "within_cv": [m.cv for m in ms]}
        rows.append(
            f"| {n} | {' / '.join(f'{t:.0f}' for t in tp)} | {100 * cv:.2f} % | {statistics.median(m.cv for m in ms) * 100:.1f} % "
            f"| {statistics.median(sec):.1f} s (max {max(sec):.1f}) |"
        )
        print(rows[-1], flush=True)
    md = [
        "# Repeatability and cost of one throughput measurement (CPU, default protocol)",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. Protocol: batch {s.batch}, "
        f"{s.precision}, {s.threads} thread, backend {s.backend}, warm-up {s.warmup_s:g} s, timed {s.measure_s:g} s.",
        f"Each model measured {args.repeats} times back to back in one process.",
        "",
        "| model | medians (img/s) | CV of the medians | median within-run CV of iteration times | seconds per measurement |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `uv run python benchmarks/throughput_precision.py --repeats {args.repeats} --out {args.out}`",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"device": fp, "results": data}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
