"""Does the sampler beat random search, and what does orchestration cost? (results/search_quality.md)

For each seed, one search per sampler (TPE, NSGA-II, random) with the same trials, device,
budget, space, proxy and measurement protocol, each its own study in one SQLite file. Reported:

* hypervolume of each run's feasible Pareto front in (proxy score, throughput), against the
  reference point (lowest feasible proxy score seen in any run, budget) and normalised by the box up to
  the best score and throughput seen in any run, after every ``--checkpoint`` trials;
* the share of wall time spent outside measurement and proxy evaluation (Optuna ask/tell and
  the database, Ray dispatch, model construction for MACs/params), with and without the
  start-up (Ray, study, data).

Each run has its own SQLite file (study and measurement store), as independent user runs
would: every run measures its candidates itself, so its overhead share is representative.

    uv run python benchmarks/search_quality.py --trials 32 --seeds 0 1 2 --out results/search_quality.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import write_report
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.search.loop import run_search
from effvit_nas.search.options import RunOptions
from effvit_nas.search.problem import SearchProblem
from effvit_nas.search.study import open_study
from effvit_nas.trials.pareto import front_points, hypervolume_2d

SUMMARY_FIELDS = (
    "complete",
    "failed",
    "feasible",
    "skipped_predicted",
    "audited",
    "audit_correct",
    "seconds",
    "setup_s",
    "measure_s",
    "proxy_s",
    "run_trials",
)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"])
    ap.add_argument("--space", default="efficientvit")
    ap.add_argument("--budget", type=float, default=600.0, help="img/s (M0 measures ~580 img/s here)")
    ap.add_argument("--proxy", default="naswot")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--checkpoint", type=int, default=8)
    ap.add_argument("--storage", default=None, help="one database for all runs (shares measurements); default: a fresh SQLite file per run")
    ap.add_argument("--out", type=Path, default=Path("results/search_quality.md"))
    return ap.parse_args()


def run_one(args: argparse.Namespace, sampler: str, seed: int, folder: str) -> dict[str, Any]:
    """One search; its summary and every trial's values, feasibility and measured flag."""
    problem = SearchProblem(
        device="cpu",
        budget=args.budget,
        space=args.space,
        proxy=args.proxy,
        bench=BenchSettings(batch=16, warmup_s=args.warmup, measure_s=args.duration),
    )
    options = RunOptions(
        study=f"{sampler}-s{seed}",
        storage=args.storage or f"sqlite:///{folder}/{sampler}-s{seed}.db",
        trials=args.trials,
        sampler=sampler,
        seed=seed,
    )
    t0 = time.perf_counter()
    summary = run_search(problem, options)
    records = sorted(open_study(problem, options, create=False).records(), key=lambda r: r.number)
    seconds = time.perf_counter() - t0
    print(
        f"{sampler:6s} seed {seed}: {summary.feasible}/{summary.complete} feasible, {len(summary.pareto)} Pareto, {summary.seconds:.0f} s",
        flush=True,
    )
    return {
        "sampler": sampler,
        "seed": seed,
        "seconds": seconds,
        "summary": {k: getattr(summary, k) for k in SUMMARY_FIELDS},
        "trials": [
            {
                "number": r.number,
                "state": r.state,
                "values": list(r.values) if r.values else None,
                "feasible": r.feasible,
                "measured": r.measured,
            }
            for r in records
        ],
    }


def checkpoints_of(args: argparse.Namespace) -> list[int]:
    """Trial counts at which hypervolume is reported: every ``--checkpoint`` and the last."""
    checkpoints = list(range(args.checkpoint, args.trials + 1, args.checkpoint))
    if not checkpoints or checkpoints[-1] != args.trials:
        checkpoints.append(args.trials)
    return checkpoints


def score_runs(runs: list[dict[str, Any]], budget: float, checkpoints: list[int]) -> tuple[tuple, tuple]:
    """Add each run's normalised hypervolume per checkpoint and its overhead shares; returns the
    reference point and the top corner of the box, one for all runs so they are comparable."""
    feas = [t["values"] for r in runs for t in r["trials"] if t["feasible"] and t["values"]]
    ref = (min(v[0] for v in feas), budget)  # only feasible trials have a proxy score
    top = (max(v[0] for v in feas), max(v[1] for v in feas))
    box = (top[0] - ref[0]) * (top[1] - ref[1])
    for r in runs:
        r["hypervolume"] = {}
        for n in checkpoints:
            pts = [t["values"] for t in r["trials"][:n] if t["feasible"] and t["values"]]
            r["hypervolume"][n] = hypervolume_2d(front_points(pts), ref) / box
        s = r["summary"]
        loop = s["seconds"] - s["setup_s"]
        r["overhead_share"] = 1 - (s["measure_s"] + s["proxy_s"]) / s["seconds"]
        r["loop_overhead_share"] = 1 - (s["measure_s"] + s["proxy_s"]) / loop
    return ref, top


def quality_lines(args: argparse.Namespace, runs: list[dict[str, Any]], ref: tuple, top: tuple, checkpoints: list[int]) -> list[str]:
    """The report's heading, setting, and hypervolume tables (per run, then median over seeds)."""
    lines = [
        "# Search quality: samplers vs random, orchestration overhead",
        "",
        f"Command: `uv run python benchmarks/search_quality.py --trials {args.trials} --seeds {' '.join(map(str, args.seeds))} "
        f"--samplers {' '.join(args.samplers)} --space {args.space} --budget {args.budget:g} --proxy {args.proxy} "
        f"--warmup {args.warmup:g} --duration {args.duration:g} --out {args.out}`",
        "",
        f"Device cpu (2-core AMD EPYC VM), protocol: trace, batch 16, 1 thread, fp32, warm-up {args.warmup:g} s, "
        f"timed {args.duration:g} s. Space `{args.space}`, budget {args.budget:g} img/s, proxy `{args.proxy}`, "
        f"{args.trials} trials per run. One SQLite file (study + measurement store) per run.",
        "",
        f"Hypervolume: feasible Pareto front in (proxy score, img/s), reference point (score {ref[0]:.1f}, "
        f"{ref[1]:g} img/s), normalised by the box up to (score {top[0]:.1f}, {top[1]:.0f} img/s) — the best of all runs.",
        "",
        "| sampler | seed | " + " | ".join(f"HV@{n}" for n in checkpoints) + " | feasible | skipped (predicted) | audits right | wall s |",
        "|---|---|" + "---|" * len(checkpoints) + "---|---|---|---|",
    ]
    for r in runs:
        s = r["summary"]
        lines.append(
            f"| {r['sampler']} | {r['seed']} | "
            + " | ".join(f"{r['hypervolume'][n]:.3f}" for n in checkpoints)
            + f" | {s['feasible']}/{s['complete']} | {s['skipped_predicted']} | {s['audit_correct']}/{s['audited']} | {s['seconds']:.0f} |"
        )
    return lines + median_lines(args, runs, checkpoints)


def median_lines(args: argparse.Namespace, runs: list[dict[str, Any]], checkpoints: list[int]) -> list[str]:
    """Median hypervolume over seeds per sampler, and its ratio to random search's."""
    lines = [
        "",
        "Median over seeds:",
        "",
        "| sampler | " + " | ".join(f"HV@{n}" for n in checkpoints) + " | HV ratio vs random (final) |",
        "|---|" + "---|" * len(checkpoints) + "---|",
    ]
    med = {}
    for sampler in args.samplers:
        rs = [r for r in runs if r["sampler"] == sampler]
        med[sampler] = {n: statistics.median(r["hypervolume"][n] for r in rs) for n in checkpoints}
    for sampler in args.samplers:
        base = med.get("random", {}).get(args.trials)
        ratio = f"{med[sampler][args.trials] / base:.2f}x" if base else "n/a"
        lines.append(f"| {sampler} | " + " | ".join(f"{med[sampler][n]:.3f}" for n in checkpoints) + f" | {ratio} |")
    return lines


def overhead_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The orchestration-overhead table and its medians."""
    lines = [
        "",
        "## Orchestration overhead",
        "",
        "Share of each run's wall time spent outside throughput measurement (the device actor's "
        "call: model build, fuse, trace, warm-up, timing) and proxy evaluation (the phase from "
        "submitting the Ray tasks to their last result).",
        "",
        "| sampler | seed | wall s | start-up s | measuring s | proxy s | overhead (all) | overhead (after start-up) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["summary"]
        lines.append(
            f"| {r['sampler']} | {r['seed']} | {s['seconds']:.1f} | {s['setup_s']:.1f} | {s['measure_s']:.1f} | {s['proxy_s']:.1f} "
            f"| {100 * r['overhead_share']:.1f} % | {100 * r['loop_overhead_share']:.1f} % |"
        )
    shares = [r["overhead_share"] for r in runs]
    loop_shares = [r["loop_overhead_share"] for r in runs]
    return [
        *lines,
        "",
        f"Median overhead: {100 * statistics.median(shares):.1f} % of wall time including start-up, "
        f"{100 * statistics.median(loop_shares):.1f} % after it (target < 5 %).",
        "",
    ]


def main() -> None:
    args = parse_args()
    folder = tempfile.mkdtemp()
    runs = [run_one(args, sampler, seed, folder) for seed in args.seeds for sampler in args.samplers]
    checkpoints = checkpoints_of(args)
    ref, top = score_runs(runs, args.budget, checkpoints)
    lines = quality_lines(args, runs, ref, top, checkpoints) + overhead_lines(runs)
    write_report(
        args.out, "\n".join(lines), {"args": {k: str(v) for k, v in vars(args).items()}, "reference": ref, "top": top, "runs": runs}
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
