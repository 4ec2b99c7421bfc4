"""Issue 48 item 4: the predicted search (`search --strategy predicted`) against today's
measure-everything search (`--strategy measure`) on the CPU, and four budgets from one
calibration. Not a test: run on a quiet machine (each run times candidates on the CPU).

* For each seed (``--seeds`` from ``--first-seed``; default 0..2) and strategy (``--strategies``,
  default both), on the same space, proxy, data and budget: one
  `effvit-nas search` of ``--minutes`` (a fresh storage each, so the predicted strategy pays
  its calibration inside the wall-clock); at each checkpoint, the hypervolume of the MEASURED
  feasible front among the trials finished by then, and how many candidates were measured.
  Hypervolume: Optuna's (``optuna._hypervolume.compute_hypervolume``, exact in 2-D) on
  (proxy / the budget preset's proxy, throughput / budget), reference point (0, 1): a
  feasible point scores the box between it and (proxy 0, throughput = budget).
* Four budgets (``--budgets``, default M0,M1,M2,M3 at 64 px) from one calibration
  (`--strategy predicted --budget M0,M1,M2,M3`): time to all four fronts, and each front
  against the preset at its budget (the preset's proxy value; front points that dominate it).

    uv run python benchmarks/specialise_cpu.py --out results/specialise_cpu     # ~4.5-5 h
    uv run python benchmarks/specialise_cpu.py --quick --out /tmp/specialise_quick   # proves it runs
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.trials.records import Attr, is_feasible

FAST_TIMING = ["--warmup", "0.1", "--window", "0.05", "--duration", "0.3"]


@dataclass(frozen=True)
class Plan:
    space: str
    budget: str
    budgets: tuple[str, ...]
    seeds: tuple[int, ...]
    minutes: float
    checkpoints: tuple[float, ...]  # minutes
    candidates: int
    calibration_archs: int
    extra: tuple[str, ...]  # data/timing flags shared by every run
    strategies: tuple[str, ...] = ("measure", "predicted")


def plan_of(args: argparse.Namespace) -> Plan:
    if args.quick:  # the tiny space, short timings, one seed, minutes of runs
        data = ("--img-size", "32", "--classes", "4", "--heartbeat", "1", *FAST_TIMING)
        # checkpoints count from the process start: Ray, the budget's preset and (predicted)
        # the calibration come first, minutes on a busy 2-core machine
        return Plan("tiny", "M0", ("M0", "M1"), (0,), 4.0, (3.0, 5.0, 7.0), 300, 2, data)
    checkpoints = tuple(float(c) for c in args.checkpoints.split(","))
    data = ("--img-size", "64", *args.search_args.split())
    return Plan(
        args.space, args.budget, tuple(args.budgets.split(",")), tuple(range(args.first_seed, args.first_seed + args.seeds)), args.minutes, checkpoints,
        args.candidates, args.calibration_archs, data, tuple(args.strategies.split(",")),
    )  # fmt: skip


# what the predicted strategy says between rounds (calibration, NSGA-II, shortlists, refits)
NOTE_WORDS = ("round ", "refit", "within ±", "predicted front", "calibrat", "efficiency predictor")


def _search(
    plan: Plan, storage: str, study: str, strategy: str, budget: str, seed: int, minutes: float
) -> tuple[list[str], float, list[str]]:
    """Run one `effvit-nas search` to its end; (its command, wall-clock seconds, the predicted
    strategy's notes: its per-trial lines are left out)."""
    cmd = [sys.executable, "-m", "effvit_nas.cli", "search", "--strategy", strategy, "--budget", budget, "--space", plan.space]
    cmd += ["--study", study, "--storage", storage, "--seed", str(seed), "--timeout", f"{minutes * 60:.0f}s", *plan.extra]
    if strategy == "predicted":
        cmd += ["--candidates", str(plan.candidates), "--calibration-archs", str(plan.calibration_archs)]
    else:
        cmd += ["--quiet"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    notes = [line.rstrip() for line in r.stdout.splitlines() if any(w in line for w in NOTE_WORDS)]
    return cmd, time.time() - t0, notes


def preset_proxy(space: str, budget: str, img_size: int, classes: int) -> float:
    """The macs proxy of the budget's preset (relative budgets only), as the search scores it."""
    name = budget.split("x")[-1].upper()
    return analytic_features(PRESETS[name].replace(img_size=img_size, num_classes=classes))["macs"]


def _hv(points: list[tuple[float, float]], acc_ref: float, budget: float) -> float:
    """Hypervolume of (proxy, throughput) points, maximised, normalised, reference (0, 1)."""
    if not points:
        return 0.0
    loss = -np.array([(a / acc_ref, t / budget) for a, t in points])
    return float(compute_hypervolume(loss, np.array([0.0, -1.0])))


def trajectory(storage: str, study: str, start: float, plan: Plan, acc_ref: float) -> dict[str, Any]:
    """At each checkpoint: hypervolume of the measured feasible trials finished by then, and
    the candidates measured by then; counted from the process start (``checkpoints``) and from
    the first trial's start (``after_setup``: Ray, the budget preset's figure and, predicted,
    the calibration and first NSGA-II done, as with a profile already stored)."""
    s = optuna.load_study(study_name=study, storage=storage)
    budget = float(s.user_attrs["effvit"]["budget"])  # the study's problem, images/s
    done = [t for t in s.trials if t.state.name == "COMPLETE" and t.datetime_complete is not None]
    first = min((t.datetime_start.timestamp() for t in done if t.datetime_start is not None), default=start)

    def at(t0: float) -> list[dict[str, Any]]:
        rows = []
        for m in plan.checkpoints:
            by = [t for t in done if t.datetime_complete.timestamp() - t0 <= m * 60]
            feasible = [(t.values[0], t.values[1]) for t in by if t.user_attrs.get(Attr.MEASURED) and is_feasible(t)]
            measured = sum(bool(t.user_attrs.get(Attr.MEASURED)) and "result reused" not in t.user_attrs.get(Attr.NOTE, "") for t in by)
            rows.append({"minutes": m, "hypervolume": _hv(feasible, acc_ref, budget), "measured": measured, "feasible": len(feasible)})
        return rows

    return {
        "budget_img_s": budget, "start": start, "setup_s": first - start, "checkpoints": at(start), "after_setup": at(first),
        "curve": hv_curve(done, start, acc_ref, budget),
    }  # fmt: skip


def hv_curve(done: list[Any], start: float, acc_ref: float, budget: float) -> list[tuple[float, float]]:
    """(minutes from ``start``, hypervolume) after each finished trial, in finishing order."""
    done = sorted(done, key=lambda t: t.datetime_complete)
    pts: list[tuple[float, float]] = []
    curve = []
    for t in done:
        if t.user_attrs.get(Attr.MEASURED) and is_feasible(t):
            pts.append((t.values[0], t.values[1]))
        curve.append(((t.datetime_complete.timestamp() - start) / 60, _hv(pts, acc_ref, budget)))
    return curve


def reaches(curve: list[list[float]], target: float) -> float | None:
    """The first minute at which ``curve`` reaches ``target`` (None: never)."""
    return next((m for m, hv in curve if hv >= target), None)


def shortlist_errors(storage: str, study: str) -> list[dict[str, Any]]:
    """Per NSGA-II round, the efficiency predictor on what it shortlisted and the search then
    measured: how many, the share within ±10 % of the measurement, the median signed error
    (prediction / measurement - 1: positive, the predictor was optimistic) and whether the
    measurement fell inside the predicted 90 % interval."""
    s = optuna.load_study(study_name=study, storage=storage)
    by_round: dict[int, list[tuple[float, float, float, float]]] = {}
    for t in s.trials:
        p, m = t.user_attrs.get(Attr.PREDICTOR_THROUGHPUT), t.user_attrs.get(Attr.THROUGHPUT)
        if t.state.name == "COMPLETE" and p and m and t.user_attrs.get(Attr.MEASURED):
            by_round.setdefault(int(t.user_attrs[Attr.PREDICTOR_ROUND]), []).append((p[0], p[1], p[2], float(m)))
    rows = []
    for rnd, pts in sorted(by_round.items()):
        err = np.array([pred / m - 1 for pred, _, _, m in pts])
        inside = np.mean([lo <= m <= hi for _, lo, hi, m in pts])
        rows.append(
            {
                "round": rnd,
                "n": len(pts),
                "within_10": float(np.mean(np.abs(err) <= 0.1)),
                "median_error": float(np.median(err)),
                "inside_interval": float(inside),
            }
        )
    return rows


def calibration_measurements(storage: str) -> int:
    from sqlalchemy import create_engine, text

    with create_engine(storage).connect() as c:
        rows = list(c.execute(text("SELECT record_json FROM effvit_predictors")))
    return sum(json.loads(r[0])["calibration"]["measured_now"] for r in rows)


def compare(plan: Plan, work: Path, img_size: int, classes: int, on_run: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Both strategies for each seed; ``on_run(rows so far)`` after each run (the report is
    written as the runs finish, so a stopped benchmark keeps what it measured)."""
    acc_ref = preset_proxy(plan.space, plan.budget, img_size, classes)
    out: list[dict[str, Any]] = []
    for seed in plan.seeds:
        for strategy in plan.strategies:
            storage = f"sqlite:///{work / f'{strategy}-s{seed}.db'}"
            start = time.time()
            cmd, seconds, notes = _search(plan, storage, "s", strategy, plan.budget, seed, plan.minutes)
            row = {"seed": seed, "strategy": strategy, "seconds": seconds, "command": shlex.join(cmd[2:]), "notes": notes}
            row |= trajectory(storage, "s", start, plan, acc_ref)
            row["calibration_measured"] = calibration_measurements(storage) if strategy == "predicted" else 0
            row["shortlist_errors"] = shortlist_errors(storage, "s") if strategy == "predicted" else []
            print(json.dumps({k: row[k] for k in ("seed", "strategy", "seconds", "checkpoints")}), flush=True)
            out.append(row)
            on_run(out)
    return out


def four_budgets(plan: Plan, work: Path, img_size: int, classes: int) -> dict[str, Any]:
    storage = f"sqlite:///{work / 'budgets.db'}"
    start = time.time()
    cmd, seconds, notes = _search(plan, storage, "b", "predicted", ",".join(plan.budgets), 0, plan.minutes)
    return {
        "seconds": seconds, "start": start, "command": shlex.join(cmd[2:]), "calibration_measured": calibration_measurements(storage),
        "fronts": budget_fronts(plan, storage, img_size, classes, start), "notes": notes,
    }  # fmt: skip


def budget_fronts(plan: Plan, storage: str, img_size: int, classes: int, start: float | None) -> dict[str, Any]:
    """Each budget's study: its budget, its front against the preset at the budget, its
    hypervolume (as the strategy comparison's, on its own budget and preset) at the end and,
    given the run's ``start``, at each checkpoint, and the predictor's errors."""
    fronts = {}
    for b in plan.budgets:
        s = optuna.load_study(study_name=f"b-{b}", storage=storage)
        front = pareto_trials(s)  # feasible, measured, non-dominated: what `search` reports
        ref = preset_proxy(plan.space, b, img_size, classes)
        problem = s.user_attrs["effvit"]
        fronts[b] = {
            "budget_img_s": float(problem["budget"]),
            "budget_reference": problem.get("budget_reference"),
            "checkpoints": trajectory(storage, f"b-{b}", start, plan, ref)["checkpoints"] if start else [],
            "front": len(front),
            "measured": sum(bool(t.user_attrs.get(Attr.MEASURED)) for t in s.trials),
            "best_proxy": max((t.values[0] for t in front), default=None),
            "preset_proxy": ref,
            "dominating_preset": sum(t.values[0] > ref for t in front),  # feasible: at least the budget's throughput
            "shortlist_errors": shortlist_errors(storage, f"b-{b}"),
            "hypervolume": _hv([(t.values[0], t.values[1]) for t in front], ref, float(s.user_attrs["effvit"]["budget"])),
        }
    return fronts


def reach_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Per seed: when the predicted run first reached the measure-everything run's final
    hypervolume, from its start and from the end of its setup, as a share of the measure run's
    wall-clock (issue 48's goal: at most 1/5); with several seeds, the median share and range."""
    out = [
        "| seed | budget img/s (measure, predicted) | measure's final HV (its wall-clock, min) | "
        "predicted reaches it at min from start (share) | from its setup's end (share) |",
        "|---|---|---|---|---|",
    ]
    shares: list[tuple[float, float]] = []
    pairs = 0
    for m in (r for r in runs if r["strategy"] == "measure"):
        p = next((r for r in runs if r["strategy"] == "predicted" and r["seed"] == m["seed"] and "curve" in r), None)
        if p is None or "curve" not in m:
            continue
        pairs += 1
        # its end, not its last checkpoint: `search --timeout` counts from after its setup
        final, total = m["curve"][-1][1], m["seconds"] / 60
        at = reaches(p["curve"], final)
        cells = ["never", "never"]
        if at is not None:
            after = at - p["setup_s"] / 60
            cells = [f"{at:.1f} ({at / total:.2f})", f"{after:.1f} ({after / total:.2f})"]
            shares.append((at / total, after / total))
        budgets = f"{m.get('budget_img_s', float('nan')):.1f}, {p.get('budget_img_s', float('nan')):.1f}"
        out.append(f"| {m['seed']} | {budgets} | {final:.3f} ({total:.1f}) | {cells[0]} | {cells[1]} |")
    if pairs > 1 and shares:
        start, setup = zip(*shares, strict=True)
        out.append(
            f"| median share (range) of the {len(shares)} of {pairs} seeds that reach it | | | {median_range(start, '.2f')} "
            f"| {median_range(setup, '.2f')} |"
        )
    return out


def median_range(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each in format ``fmt``."""
    return f"{np.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def median_rows(runs: list[dict[str, Any]], key: str, lead: int, trail: int = 0) -> list[str]:
    """With several seeds, a row per strategy: each checkpoint's median hypervolume (and its
    range) over the seeds; ``lead`` / ``trail``: the empty cells before and after the checkpoints."""
    out = []
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r[key] for r in runs if r["strategy"] == strategy]
        if len(mine) > 1:
            cells = [median_range([c[i]["hypervolume"] for c in mine], ".3f") for i in range(len(mine[0]))]
            out.append(f"| median of {len(mine)} | {strategy} | " + "| " * lead + " | ".join(cells) + " |" + " |" * trail)
    return out


def markdown(
    plan: Plan, runs: list[dict[str, Any]], budgets: dict[str, Any] | None, command: str, compared: Sequence[dict[str, Any]] = ()
) -> str:
    """The report; ``compared``: predicted runs of another report, for the reach table."""
    head = ["# Predicted search vs measure-everything on the CPU (issue 48 item 4)", "", "    " + command, ""]
    lines = [*head, *(comparison(plan, runs, compared) if runs else []), *shortlist_table(runs, budgets)]
    for r in runs:
        if r.get("notes"):
            lines += ["", f"Seed {r['seed']}, {r['strategy']}: what the search said between rounds", "", *("    " + n for n in r["notes"])]
    return "\n".join(lines + budgets_section(plan, budgets))


def comparison(plan: Plan, runs: list[dict[str, Any]], compared: Sequence[dict[str, Any]]) -> list[str]:
    """The strategy comparison: hypervolume at each checkpoint, from the start and after setup."""
    lines = [
        f"Space {plan.space}, proxy macs, budget {plan.budget}; hypervolume of the measured feasible front on "
        "(proxy / the preset's proxy, throughput / budget), reference point (0, 1), Optuna's exact 2-D hypervolume.",
        "",
        "| seed | strategy | " + " | ".join(f"HV @ {m:g} min (measured)" for m in plan.checkpoints) + " | calibration measurements |",
        "|---|---|" + "---|" * (len(plan.checkpoints) + 1),
    ]
    for r in runs:
        cells = [f"{c['hypervolume']:.3f} ({c['measured']})" for c in r["checkpoints"]]
        lines.append(f"| {r['seed']} | {r['strategy']} | " + " | ".join(cells) + f" | {r['calibration_measured']} |")
    lines += median_rows(runs, "checkpoints", 0, trail=1)
    lines += [
        "",
        "The same, counted from each run's first trial (its setup done: Ray, the budget preset's figure and, for "
        "predicted, the calibration and the first NSGA-II; what a run with a profile already stored skips in part):",
        "",
        "| seed | strategy | setup s | " + " | ".join(f"HV @ {m:g} min (measured)" for m in plan.checkpoints) + " |",
        "|---|---|---|" + "---|" * len(plan.checkpoints),
    ]
    for r in runs:
        cells = [f"{c['hypervolume']:.3f} ({c['measured']})" for c in r["after_setup"]]
        lines.append(f"| {r['seed']} | {r['strategy']} | {r['setup_s']:.0f} | " + " | ".join(cells) + " |")
    lines += median_rows(runs, "after_setup", 1)
    return [*lines, "", *reach_lines([*runs, *compared])]


def shortlist_table(runs: list[dict[str, Any]], budgets: dict[str, Any] | None) -> list[str]:
    """The predictor's error on what each round shortlisted, per run and per budget."""
    lines: list[str] = []
    errors = [(f"seed {r['seed']}", e) for r in runs for e in r.get("shortlist_errors", [])]
    errors += [(f"budget {b}", e) for b, f in (budgets or {}).get("fronts", {}).items() for e in f.get("shortlist_errors", [])]
    if errors:
        lines += [
            "",
            "The efficiency predictor on the architectures it shortlisted (measured afterwards), per round: "
            "error = prediction / measurement - 1 (positive: optimistic).",
            "",
            "| run | round | measured | within ±10 % | median error | inside the 90 % interval |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {who} | {e['round']} | {e['n']} | {100 * e['within_10']:.0f} % | {100 * e['median_error']:+.1f} % | {100 * e['inside_interval']:.0f} % |"
            for who, e in errors
        ]
        # every shortlisted architecture was outside the fit that predicted it: held out as it happened
        n = sum(e["n"] for _, e in errors)
        hits = sum(round(e["within_10"] * e["n"]) for _, e in errors)
        lines += ["", f"In all: {hits} of {n} shortlisted architectures ({100 * hits / n:.1f} %) within ±10 % of their measurement."]
    return lines


def budgets_section(plan: Plan, budgets: dict[str, Any] | None) -> list[str]:
    """The several-budgets run: time to all fronts, each front against its preset, its
    hypervolume at each checkpoint (from the run's start), what the search said."""
    lines = ["", f"## {len(plan.budgets)} budgets from one calibration", ""]
    if budgets is None:
        return [*lines, "Not run (yet)."]
    lines += [f"    {budgets['command']}", ""]
    lines.append(f"Time to all fronts: {budgets['seconds']:.0f} s ({budgets['calibration_measured']} calibration measurements).")
    marks = [c["minutes"] for c in next(iter(budgets["fronts"].values())).get("checkpoints", [])]
    lines += [
        "",
        "| budget | img/s | front | measured | best proxy | preset's proxy | front points above the preset | HV |"
        + "".join(f" HV @ {m:g} min |" for m in marks),
        "|---|---|---|---|---|---|---|---|" + "---|" * len(marks),
    ]
    for b, f in budgets["fronts"].items():
        best = f"{f['best_proxy']:.4g}" if f["best_proxy"] is not None else "-"
        hv = f"{f['hypervolume']:.3f}" if "hypervolume" in f else "-"
        img_s = f"{f['budget_img_s']:.1f}" if "budget_img_s" in f else "-"
        at = "".join(f" {c['hypervolume']:.3f} ({c['measured']}) |" for c in f.get("checkpoints", []))
        lines.append(
            f"| {b} | {img_s} | {f['front']} | {f['measured']} | {best} | {f['preset_proxy']:.4g} | {f['dominating_preset']} | {hv} |{at}"
        )
    return [*lines, "", "What the search said between rounds:", "", *("    " + n for n in budgets.get("notes", []))]


def rewrite(rec: dict[str, Any], plan: Plan, work: Path | None, img_size: int, classes: int) -> None:
    """Recompute each run's trajectory from its store in ``work`` (its start: its first trial's
    start less its setup time, for rows written before the start was kept)."""
    if work is None:
        return
    acc_ref = preset_proxy(plan.space, plan.budget, img_size, classes)
    for row in rec["runs"]:
        name = f"{row['strategy']}-s{row['seed']}.db"
        storage = f"sqlite:///{work / name}"
        if "start" not in row:
            s = optuna.load_study(study_name="s", storage=storage)
            first = min(t.datetime_start.timestamp() for t in s.trials if t.state.name == "COMPLETE" and t.datetime_start)
            row["start"] = first - row["setup_s"]
        row |= trajectory(storage, "s", row["start"], plan, acc_ref)
    if rec.get("four_budgets"):
        b = rec["four_budgets"]
        b["fronts"] = budget_fronts(plan, f"sqlite:///{work / 'budgets.db'}", img_size, classes, b.get("start"))


def sizes(plan: Plan) -> tuple[int, int]:
    """The runs' resolution and classes, from their shared flags."""
    img_size = int(plan.extra[plan.extra.index("--img-size") + 1])
    return img_size, int(plan.extra[plan.extra.index("--classes") + 1]) if "--classes" in plan.extra else 10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="efficientvit64")
    p.add_argument("--budget", default="M0")
    p.add_argument("--budgets", default="M0,M1,M2,M3")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="Seeds run: first-seed .. first-seed + seeds - 1.")
    p.add_argument("--minutes", type=float, default=40.0)
    p.add_argument("--checkpoints", default="5,10,20,40")
    p.add_argument("--candidates", type=int, default=10_000)
    p.add_argument("--calibration-archs", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="Tiny space, one seed, 4-minute runs: proves the script runs.")
    p.add_argument("--strategies", default="measure,predicted", help="The strategies run per seed.")
    p.add_argument(
        "--predicted-from", type=Path, default=None, help="A report JSON whose predicted runs the reach table compares with (run apart)."
    )
    p.add_argument("--no-budgets", action="store_true", help="Skip the several-budgets run.")
    p.add_argument(
        "--search-args", default="", help="Flags added to every `search` (e.g. '--pair-settle 0': the protocol of runs stored before 0.3)."
    )
    p.add_argument("--work", type=Path, default=None, help="Keep the runs' SQLite stores in this folder [default: a temporary one].")
    p.add_argument("--out", default="results/specialise_cpu")
    p.add_argument("--report-only", action="store_true", help="Rewrite the report from OUT.json and the stores in --work, timing nothing.")
    args = p.parse_args()
    plan = plan_of(args)
    img_size, classes = sizes(plan)
    command = "uv run python benchmarks/specialise_cpu.py " + shlex.join(sys.argv[1:])

    compared = (
        [r for r in json.loads(args.predicted_from.read_text())["runs"] if r["strategy"] == "predicted"] if args.predicted_from else []
    )

    def report(runs: list[dict[str, Any]], budgets: dict[str, Any] | None) -> None:
        record = {
            "plan": asdict(plan),
            "command": command,
            "runs": runs,
            "four_budgets": budgets,
            "compared_with": str(args.predicted_from or ""),
        }
        write_report(f"{args.out}.md", markdown(plan, runs, budgets, command, compared), record)

    if args.report_only:
        stored = Path(f"{args.out}.json")
        if not stored.exists():
            p.error(f"--report-only: no {stored} to report")
        rec = json.loads(stored.read_text())
        # the runs' own plan (space, budget, checkpoints), not this command line's
        plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec["plan"].items()})
        rewrite(rec, plan, args.work, *sizes(plan))
        write_report(f"{args.out}.md", markdown(plan, rec["runs"], rec["four_budgets"], rec["command"], compared), rec)
        return
    with tempfile.TemporaryDirectory(prefix="specialise-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = compare(plan, work, img_size, classes, lambda rows: report(rows, None))
        budgets = None if args.no_budgets else four_budgets(plan, work, img_size, classes)
    report(runs, budgets)
    print(markdown(plan, runs, budgets, command, compared))


if __name__ == "__main__":
    main()
