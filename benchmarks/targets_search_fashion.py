"""A 2-target search (``cpu/trace`` throughput and ``cpu/openvino`` batch-1 latency) against the
two single-target searches of the same size, on Fashion-MNIST at 64 px (the ``tiny`` space, the
``train`` proxy), each run from the CLI as a user would. Then every single-target search's
Pareto models are measured on the *other* target: does a search for one runtime return models
that meet the other's budget? Not a test: run on a quiet machine.

    uv run --extra openvino python benchmarks/targets_search_fashion.py --trials 20 --steps 100 \\
        --out results/targets_search_fashion

The latency budget is M0's p50 on OpenVINO (64 px, batch 1, anchored as ``bench`` takes it)
divided by ``--latency-factor``, measured first and written into the report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks._report import write_report
from benchmarks.targets_cpu import anchor_figure, anchored, settings_for
from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.measure.devices import fingerprint
from effvit_nas.trials.pareto import hypervolume_2d, on_front
from effvit_nas.trials.records import TrialRecord

TRACE = "cpu/trace:2xM0"
NAMES = ("two-targets", "trace-only", "openvino-only")


def run_search(name: str, targets: list[str], args: argparse.Namespace, storage: str) -> dict[str, Any]:
    """One CLI search; its wall-clock seconds and JSON summary."""
    cmd = [sys.executable, "-m", "effvit_nas.cli", "search", "--space", "tiny", "--data", "fashion-mnist"]
    cmd += ["--proxy", "train", "--steps", str(args.steps), "--val-per-class", str(args.val_per_class)]
    cmd += ["--trials", str(args.trials), "--seed", str(args.seed), "--study", name, "--storage", storage, "--quiet", "--json"]
    for t in targets:
        cmd += ["--target", t]
    t0 = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    return {"command": " ".join(cmd[3:]), "wall_s": time.time() - t0, "summary": json.loads(out.stdout or "{}")}


def resumed_latency_target(storage: str) -> str | None:
    """The latency target of an earlier run's 2-target study (a resumed study keeps its targets)."""
    try:
        ident = optuna.load_study(study_name="two-targets", storage=storage).user_attrs.get("effvit") or {}
    except KeyError:
        return None
    return next((t["spec"] for t in ident.get("targets", []) if t["metric"] == "latency"), None)


def cli(*argv: str) -> str:
    """One CLI command's stdout (it must succeed)."""
    return subprocess.run([sys.executable, "-m", "effvit_nas.cli", *argv], check=True, capture_output=True, text=True).stdout


def plot_export(args: argparse.Namespace, storage: str) -> dict[str, Any]:
    """The 2-target study's Pareto plot (one panel per target) and export (a card row per
    target), from the CLI; and how many trials it holds (a resume adds two)."""
    png = args.out.with_name(args.out.name + "_pareto.png")
    plot = cli("pareto", "--study", "two-targets", "--storage", storage, "--out", str(png))
    models = Path("/tmp") / (args.out.name + "_models")  # the exported weights are not kept in results/
    export = cli("export", "--study", "two-targets", "--storage", storage, "--out", str(models), "--force")
    trials = optuna.load_study(study_name="two-targets", storage=storage).trials
    held = {"complete": sum(t.state.name == "COMPLETE" for t in trials), "feasible": len(feasible_all(trials))}
    return {"pareto": plot.strip().splitlines(), "export": export.strip().splitlines(), "resume": held}


def feasible_all(trials: list) -> list[TrialRecord]:
    return [r for r in (TrialRecord.of(t) for t in trials if t.state.name == "COMPLETE") if r.feasible]


def plot_export_resume(args: argparse.Namespace, storage: str, targets: list[str]) -> dict[str, Any]:
    """The 2-target study as a user goes on with it: a resume that adds two trials, then
    :func:`plot_export`."""
    run_search("two-targets", targets, argparse.Namespace(**{**vars(args), "trials": args.trials + 2}), storage)
    return plot_export(args, storage)


def feasible(study: optuna.Study, first: int) -> list[TrialRecord]:
    """Feasible records among the study's first ``first`` complete trials (a resumed study holds more)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"][:first]
    return [r for r in (TrialRecord.of(t) for t in done) if r.feasible and r.values]


def stored_run(study: optuna.Study, first: int) -> dict[str, Any]:
    """A search already stored: wall-clock from its first trial's start to its ``first``-th
    complete trial's end (the set-up before the first trial is not in it)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"][:first]
    if not done:
        raise SystemExit(f"--report-only: study {study.study_name!r} has no complete trial")
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    return {"command": "(stored)", "wall_s": (max(t.datetime_complete for t in done) - start).total_seconds(), "summary": {}}


def front(records: list[TrialRecord], axis: int) -> list[TrialRecord]:
    """Records on the (accuracy, values[axis]) front."""
    return on_front(records, lambda r: (r.values[0], r.values[axis]))  # type: ignore[index]


def hv(records: list[TrialRecord], axis: int, ref: tuple[float, float]) -> float:
    return hypervolume_2d([(r.values[0], r.values[axis]) for r in records], ref)  # type: ignore[index]


def cross_check(records: list[TrialRecord], backend: str, metric: str, budget: float) -> dict[str, Any]:
    """The given front models measured on another target (anchored, as the search measures):
    how many meet its budget (img/s-equivalent)."""
    fp = fingerprint("cpu")
    s = settings_for(backend, metric, {})
    anchor_cfg = PRESETS["M0"].replace(img_size=64, num_classes=10)
    a = anchor_figure(anchor_cfg, s, fp)
    rows = {
        r.config_hash: anchored(r.config_hash or "", ArchConfig.from_dict(r.config or {}), a, anchor_cfg, s, fp).throughput for r in records
    }
    return {"figures": rows, "meet": sum(v >= budget for v in rows.values()), "of": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--latency-factor", type=float, default=1.5, help="latency budget = M0's p50 / this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="delete the studies of an earlier run first (else each study resumes)")
    ap.add_argument("--report-only", action="store_true", help="report the stored studies (their first --trials trials), measure nothing")
    ap.add_argument("--out", type=Path, default=Path("results/targets_search_fashion"))
    args = ap.parse_args()
    db = args.out.with_suffix(".db")
    if args.fresh:
        db.unlink(missing_ok=True)
    storage = f"sqlite:///{db}"
    if args.report_only:
        latency = resumed_latency_target(storage)
        if latency is None:
            ap.error(f"--report-only: no 2-target study in {storage}")
        m0_ms = float("nan")
        runs = {n: stored_run(optuna.load_study(study_name=n, storage=storage), args.trials) for n in NAMES}
    else:
        m0 = anchor_figure(PRESETS["M0"].replace(img_size=64, num_classes=10), settings_for("openvino", "latency", {}), fingerprint("cpu"))
        m0_ms = m0.p50_ms
        latency = resumed_latency_target(storage) or f"cpu/openvino:{m0.p50_ms / args.latency_factor:.3f}ms"
        runs = {n: run_search(n, t, args, storage) for n, t in zip(NAMES, ([TRACE, latency], [TRACE], [latency]), strict=True)}
    budget_ms = float(latency.rpartition(":")[2].removesuffix("ms"))
    result = report(runs, storage, m0_ms, budget_ms, args)
    result["afterwards"] = plot_export(args, storage) if args.report_only else plot_export_resume(args, storage, [TRACE, latency])
    command = "uv run --extra openvino python benchmarks/targets_search_fashion.py " + " ".join(sys.argv[1:])
    write_report(args.out.with_suffix(".md"), markdown(result, command), result)
    print(markdown(result, command))


def report(runs: dict[str, Any], storage: str, m0_ms: float, budget_ms: float, args: argparse.Namespace) -> dict[str, Any]:
    """Fronts, hypervolumes per target and the cross-target check of each single-target front."""
    studies = {n: optuna.load_study(study_name=n, storage=storage) for n in runs}
    recs = {n: feasible(s, args.trials) for n, s in studies.items()}
    two = recs["two-targets"]
    budgets = {"trace": studies["trace-only"].user_attrs["effvit"]["budget"], "openvino": 1e3 / budget_ms}
    acc_ref = min((r.values[0] for rs in recs.values() for r in rs), default=0.0)  # type: ignore[index]
    out: dict[str, Any] = {"m0_openvino_p50_ms": m0_ms, "latency_budget_ms": budget_ms, "budgets_img_s": budgets, "runs": {}}
    for n, rs in recs.items():
        axes = {"two-targets": {"trace": 1, "openvino": 2}, "trace-only": {"trace": 1}, "openvino-only": {"openvino": 1}}[n]
        row = {**runs[n], "feasible": len(rs), "complete": min(args.trials, sum(t.state.name == "COMPLETE" for t in studies[n].trials))}
        for tname, axis in axes.items():
            ref = (acc_ref, float(budgets[tname] or 0.0))
            row[f"hv_{tname}"] = hv(rs, axis, ref)
            row[f"front_{tname}"] = [r.config_hash for r in front(rs, axis)]
        out["runs"][n] = row
    other = {"trace-only": ("openvino", "latency", budgets["openvino"], 1), "openvino-only": ("trace", "throughput", budgets["trace"], 1)}
    for n, (backend, metric, budget, axis) in other.items():
        if not args.report_only:  # measures: not in a report of stored studies
            out["runs"][n]["cross"] = cross_check(front(recs[n], axis), backend, metric, float(budget or 0.0))
    out["two_front_size"] = len(front(two, 1))
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    b = result["budgets_img_s"]
    m0 = f" {result['m0_openvino_p50_ms']:.3f} ms" if result["m0_openvino_p50_ms"] == result["m0_openvino_p50_ms"] else ""
    lines = [
        "# Two targets in one study vs two single-target searches (Fashion-MNIST, 64 px)\n",
        f"`{command}`\n",
        f"Targets: `{TRACE}` (throughput, budget {b['trace']:.0f} img/s) and `cpu/openvino:{result['latency_budget_ms']:.3f}ms` "
        f"(batch-1 p50: M0's measured p50{m0} / --latency-factor when the study was created). Hypervolume per target: feasible points in "
        "(proxy top-1, that target's figure in img/s-equivalent), reference (lowest feasible top-1 of all runs, the budget).\n",
        "| run | wall s | complete | feasible | HV trace | HV openvino | front (trace axis) | front models meeting the other target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in result["runs"].items():
        cross = r.get("cross")
        c = f"{cross['meet']}/{cross['of']}" if cross else "all (both are constraints)" if n == "two-targets" else "not measured"
        lines.append(
            f"| {n} | {r['wall_s']:.0f} | {r['complete']} | {r['feasible']} | {r.get('hv_trace', float('nan')):.4g} | "
            f"{r.get('hv_openvino', float('nan')):.4g} | {len(r.get('front_trace', r.get('front_openvino', [])))} | {c} |"
        )
    if all("cross" not in r for r in result["runs"].values()):
        lines.append(
            "\nNot measured here: each single-target front on the other target (`--report-only` measures nothing). "
            "Wall s: from a study's first trial to its last counted trial's end (set-up before it excluded; "
            "two-targets includes a stop and resume of its search)."
        )
    after = result.get("afterwards")
    if after:
        lines += [
            "\nThe 2-target study afterwards, from the CLI (`pareto`, `export --force`, the same `search` with 2 more trials):\n",
            "```",
        ]
        lines += after["pareto"] + after["export"][-3:]
        lines += [f"resumed: {after['resume'].get('complete')} complete trials ({after['resume'].get('feasible')} feasible)", "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
