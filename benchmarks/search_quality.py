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
import json
import statistics
import tempfile
import time
from pathlib import Path

from effvit_nas.measure.settings import BenchSettings
from effvit_nas.results.pareto import front_points, hypervolume_2d
from effvit_nas.search.loop import SearchSettings, open_study, run_search


def main() -> None:
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
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    bench = BenchSettings(batch=16, warmup_s=args.warmup, measure_s=args.duration)

    runs = []
    for seed in args.seeds:
        for sampler in args.samplers:
            s = SearchSettings(
                device="cpu",
                budget=args.budget,
                study=f"{sampler}-s{seed}",
                storage=args.storage or f"sqlite:///{folder}/{sampler}-s{seed}.db",
                space=args.space,
                proxy=args.proxy,
                bench=bench,
                trials=args.trials,
                sampler=sampler,
                seed=seed,
            )
            t0 = time.perf_counter()
            summary = run_search(s)
            study = open_study(s, create=False)
            trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
            runs.append(
                {
                    "sampler": sampler,
                    "seed": seed,
                    "seconds": time.perf_counter() - t0,
                    "summary": {
                        k: getattr(summary, k)
                        for k in (
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
                    },
                    "trials": [
                        {
                            "number": t.number,
                            "state": t.state.name,
                            "values": t.values,
                            "feasible": bool(t.values) and all(c <= 0 for c in t.constraints.values()),
                            "measured": t.user_attrs.get("measured"),
                        }
                        for t in trials
                    ],
                }
            )
            print(
                f"{sampler:6s} seed {seed}: {summary.feasible}/{summary.complete} feasible, "
                f"{len(summary.pareto)} Pareto, {summary.seconds:.0f} s",
                flush=True,
            )

    # one reference box for all runs, so hypervolumes are comparable
    feas = [t["values"] for r in runs for t in r["trials"] if t["feasible"] and t["values"]]
    ref = (min(v[0] for v in feas), args.budget)  # only feasible trials have a proxy score
    top = (max(v[0] for v in feas), max(v[1] for v in feas))
    box = (top[0] - ref[0]) * (top[1] - ref[1])
    checkpoints = list(range(args.checkpoint, args.trials + 1, args.checkpoint))
    if not checkpoints or checkpoints[-1] != args.trials:
        checkpoints.append(args.trials)
    for r in runs:
        r["hypervolume"] = {}
        for n in checkpoints:
            pts = [t["values"] for t in r["trials"][:n] if t["feasible"] and t["values"]]
            r["hypervolume"][n] = hypervolume_2d(front_points(pts), ref) / box
        s = r["summary"]
        loop = s["seconds"] - s["setup_s"]
        r["overhead_share"] = 1 - (s["measure_s"] + s["proxy_s"]) / s["seconds"]
        r["loop_overhead_share"] = 1 - (s["measure_s"] + s["proxy_s"]) / loop

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
    lines += [
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
    shares = [r["overhead_share"] for r in runs]
    loop_shares = [r["loop_overhead_share"] for r in runs]
    lines += [
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
    lines += [
        "",
        f"Median overhead: {100 * statistics.median(shares):.1f} % of wall time including start-up, "
        f"{100 * statistics.median(loop_shares):.1f} % after it (target < 5 %).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reference": ref, "top": top, "runs": runs}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
