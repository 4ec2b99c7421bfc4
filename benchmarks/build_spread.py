"""Where does a runtime's batch-1 latency figure vary between fresh processes: in the timing,
or in the build (two builds of one model need not run at the same speed)?

In one process, for each backend: builds candidate and anchor (M1 and M0 at 224 px) ``--builds``
times; each built pair is timed in ratio mode (the default settled turns) ``--timings`` times.
The spread of a pair's ratios over its timings is the timing's share; the spread of the
per-build means over the builds is the build's share, what a fresh process adds. Each timing
that met ``ci_target`` before ``--duration`` is counted apart: an early stop is the figure of
one phase of the machine's speed, not of the whole run. Run on a quiet core:

    taskset -c 0 uv run python benchmarks/build_spread.py --backends onnxruntime,trace \\
        --out results/build_spread_cpu
    taskset -c 0 uv run python benchmarks/build_spread.py --backends executorch --builds 1 \\
        --timings 16 --ci-target 0.01 --out OUT   # ExecuTorch's early stops (bench times 4 s)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import backends_arg, write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import on_device, prepare, time_pair


def cv(xs: list[float]) -> float | None:
    """Coefficient of variation of ``xs``, in % (None for fewer than 2)."""
    return 100 * statistics.stdev(xs) / statistics.mean(xs) if len(xs) > 1 else None


def built_pair(settings: BenchSettings, candidate: str, anchor: str, timings: int) -> list[dict[str, Any]]:
    """One build of each model, timed ``timings`` times in ratio mode as `bench` times a pair;
    per timing, the pair estimate (the trimmed mean of the pairs' candidate speed / anchor
    speed), its pairs, and whether it stopped before ``measure_s`` (its interval met
    ``ci_target``)."""
    out = []
    with on_device(settings, "cpu") as (sync, timer, cpu):
        c, a = (prepare(PRESETS[n], settings, "cpu", 1) for n in (candidate, anchor))
        for _ in range(timings):
            start = time.perf_counter()
            record = time_pair(c, a, settings, sync, timer, cpu)
            seconds = time.perf_counter() - start  # the warm-up included
            early = seconds < settings.warmup_s + settings.measure_s
            ms = [1e3 * float(np.median(r.times())) for r in (record.candidate, record.reference)]
            out.append(
                {
                    "ratio": record.estimate()[0],
                    "pairs": len(record.candidate.windows),
                    "seconds": seconds,
                    "early": early,
                    "candidate_ms": ms[0],
                    "reference_ms": ms[1],
                }
            )
    return out


def entry(backend: str, candidate: str, anchor: str, builds: int, timings: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides``: ratio-mode settings other than bench's (``pair_iters``, ``pair_settle_s``,
    ``ci_target``)."""
    settings = BenchSettings.for_device("cpu", backend=backend, metric="latency", **overrides)  # bench's own defaults
    runs = [built_pair(settings, candidate, anchor, timings) for _ in range(builds)]
    ratios = [[t["ratio"] for t in r] for r in runs]
    means = [statistics.mean(r) for r in ratios]
    within = [c for c in (cv(r) for r in ratios) if c is not None]
    flat = [t for r in runs for t in r]
    early, whole = ([t["ratio"] for t in flat if t["early"] is e] for e in (True, False))
    return {
        "ratios": ratios,
        "timings": runs,
        "build_means": means,
        "cv_between_builds_pct": cv(means),
        "cv_within_build_pct": statistics.mean(within) if within else None,
        # pooled over builds: only a rough split when builds differ
        "early_stops": len(early),
        "cv_early_pct": cv(early),
        "cv_whole_duration_pct": cv(whole),
        "ci_target": settings.ci_target,
        **_speed_dependence(flat),
    }


def _speed_dependence(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """Does a timing's ratio follow the machine's speed (the anchor's ms)? And how much would
    a slowdown that adds the same ms to both models move a figure made of the candidate's ms
    minus the anchor's (in % of the candidate's ms), against one made of their ratio?"""
    if len(timings) < 3:
        return {}
    ref = np.array([t["reference_ms"] for t in timings])
    cand = np.array([t["candidate_ms"] for t in timings])
    ratio = np.array([t["ratio"] for t in timings])
    diff = cand - ref
    return {
        "pearson_ratio_vs_reference_ms": float(np.corrcoef(ratio, ref)[0, 1]),
        "reference_ms_range": [float(ref.min()), float(ref.max())],
        "difference_ms_range": [float(diff.min()), float(diff.max())],
        "cv_difference_figure_pct": float(100 * diff.std(ddof=1) / cand.mean()),
        "cv_ratio_pct": float(100 * ratio.std(ddof=1) / ratio.mean()),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="onnxruntime,trace")
    ap.add_argument("--candidate", default="M1")
    ap.add_argument("--anchor", default="M0")
    ap.add_argument("--builds", type=int, default=5)
    ap.add_argument("--timings", type=int, default=4)
    ap.add_argument("--pair-iters", type=int, default=None, help="timed iterations per turn [default: bench's]")
    ap.add_argument("--pair-settle", type=float, default=None, help="untimed seconds at each turn's start [default: bench's]")
    ap.add_argument("--ci-target", type=float, default=None, help="stop a timing at this ±interval; 0: never [default: bench's]")
    ap.add_argument("--out", type=Path, default=Path("results/build_spread_cpu"))
    args = ap.parse_args()
    given = (("pair_iters", args.pair_iters), ("pair_settle_s", args.pair_settle), ("ci_target", args.ci_target))
    turns = {k: v for k, v in given if v is not None}
    command = "uv run python benchmarks/build_spread.py " + shlex.join(sys.argv[1:])
    rows = {}
    for b in backends_arg(ap, args.backends):
        rows[b] = entry(b, args.candidate, args.anchor, args.builds, args.timings, turns)
        r = rows[b]
        print(b, f"within a build {_pct(r['cv_within_build_pct'])}, between builds {_pct(r['cv_between_builds_pct'])}", flush=True)
    lines = [
        f"# Build or timing: where a batch-1 latency ratio varies ({args.candidate} against {args.anchor}, 224 px)",
        "",
        f"    {command}",
        "",
        f"{args.builds} builds of each model in one process, each built pair timed {args.timings} times in ratio mode "
        f"({'turns: ' + str(turns) if turns else 'default settled turns'}).",
        "",
        "| backend | CV of one build's timings (mean over builds) | CV of the builds' means | builds' means "
        "| timings stopped at ±ci_target | their CV | CV of the timings of the whole duration |",
        "|---|---|---|---|---|---|---|",
    ]
    for b, r in rows.items():
        means = ", ".join(f"{m:.4f}" for m in r["build_means"])
        lines.append(
            f"| {b} | {_pct(r['cv_within_build_pct'])} | {_pct(r['cv_between_builds_pct'])} | {means} "
            f"| {r['early_stops']} of {args.builds * args.timings} (±{100 * r['ci_target']:g} %) | {_pct(r['cv_early_pct'])} "
            f"| {_pct(r['cv_whole_duration_pct'])} |"
        )
    for b, r in rows.items():
        if "pearson_ratio_vs_reference_ms" in r:
            lines += [
                "",
                f"{b}: the ratio against {args.anchor}'s ms, Pearson {r['pearson_ratio_vs_reference_ms']:+.2f} over every timing; "
                f"{args.anchor} {r['reference_ms_range'][0]:.2f}-{r['reference_ms_range'][1]:.2f} ms, "
                f"{args.candidate} minus {args.anchor} {r['difference_ms_range'][0]:.3f}-{r['difference_ms_range'][1]:.3f} ms; "
                f"CV of the ratio {r['cv_ratio_pct']:.2f} %, of the difference (in % of {args.candidate}'s ms) "
                f"{r['cv_difference_figure_pct']:.2f} %.",
            ]
    write_report(f"{args.out}.md", "\n".join(lines) + "\n", {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
