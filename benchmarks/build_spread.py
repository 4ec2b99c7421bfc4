"""Where does a runtime's batch-1 latency figure vary between fresh processes: in the timing,
or in the build (two builds of one model need not run at the same speed)?

In one process, for each backend: builds candidate and anchor (M1 and M0 at 224 px) ``--builds``
times; each built pair is timed in ratio mode (the default settled turns) ``--timings`` times.
The spread of a pair's ratios over its timings is the timing's share; the spread of the
per-build means over the builds is the build's share, what a fresh process adds. Run on a
quiet core:

    taskset -c 0 uv run python benchmarks/build_spread.py --backends onnxruntime,trace \\
        --out results/build_spread_cpu
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks._report import backends_arg, write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import on_device, prepare, time_pair


def cv(xs: list[float]) -> float:
    """Coefficient of variation of ``xs``, in %."""
    return 100 * statistics.stdev(xs) / statistics.mean(xs)


def built_pair(settings: BenchSettings, candidate: str, anchor: str, timings: int) -> list[float]:
    """One build of each model, timed ``timings`` times in ratio mode as `bench` times a pair;
    per timing, the pair estimate (the trimmed mean of the pairs' candidate speed / anchor
    speed)."""
    with on_device(settings, "cpu") as (sync, timer, cpu):
        c, a = (prepare(PRESETS[n], settings, "cpu", 1) for n in (candidate, anchor))
        return [time_pair(c, a, settings, sync, timer, cpu).estimate()[0] for _ in range(timings)]


def entry(backend: str, candidate: str, anchor: str, builds: int, timings: int, turns: dict[str, Any]) -> dict[str, Any]:
    """``turns``: ratio-mode settings other than the default (``pair_iters``, ``pair_settle_s``)."""
    settings = BenchSettings.for_device("cpu", backend=backend, metric="latency", **turns)  # bench's own defaults
    ratios = [built_pair(settings, candidate, anchor, timings) for _ in range(builds)]
    means = [statistics.mean(r) for r in ratios]
    within = statistics.mean(cv(r) for r in ratios)
    return {"ratios": ratios, "build_means": means, "cv_between_builds_pct": cv(means), "cv_within_build_pct": within}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="onnxruntime,trace")
    ap.add_argument("--candidate", default="M1")
    ap.add_argument("--anchor", default="M0")
    ap.add_argument("--builds", type=int, default=5)
    ap.add_argument("--timings", type=int, default=4)
    ap.add_argument("--pair-iters", type=int, default=None, help="timed iterations per turn [default: bench's]")
    ap.add_argument("--pair-settle", type=float, default=None, help="untimed seconds at each turn's start [default: bench's]")
    ap.add_argument("--out", type=Path, default=Path("results/build_spread_cpu"))
    args = ap.parse_args()
    turns = {k: v for k, v in (("pair_iters", args.pair_iters), ("pair_settle_s", args.pair_settle)) if v is not None}
    command = "uv run python benchmarks/build_spread.py " + shlex.join(sys.argv[1:])
    rows = {}
    for b in backends_arg(ap, args.backends):
        rows[b] = entry(b, args.candidate, args.anchor, args.builds, args.timings, turns)
        print(
            b, f"within a build {rows[b]['cv_within_build_pct']:.2f} %, between builds {rows[b]['cv_between_builds_pct']:.2f} %", flush=True
        )
    lines = [
        f"# Build or timing: where a batch-1 latency ratio varies ({args.candidate} against {args.anchor}, 224 px)",
        "",
        f"    {command}",
        "",
        f"{args.builds} builds of each model in one process, each built pair timed {args.timings} times in ratio mode "
        f"({'turns: ' + str(turns) if turns else 'default settled turns'}).",
        "",
        "| backend | CV of one build's timings (mean over builds) | CV of the builds' means | builds' means |",
        "|---|---|---|---|",
    ]
    for b, r in rows.items():
        means = ", ".join(f"{m:.4f}" for m in r["build_means"])
        lines.append(f"| {b} | {r['cv_within_build_pct']:.2f} % | {r['cv_between_builds_pct']:.2f} % | {means} |")
    write_report(f"{args.out}.md", "\n".join(lines) + "\n", {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
