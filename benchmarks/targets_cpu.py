"""Every installed CPU runtime on M0-M5 and architectures sampled from the 224 px space:
throughput (batch 16, 1 thread: the paper's CPU protocol) and batch-1 latency (p50, p90), as
anchored figures (each model timed alternately with the anchor, M0 at the same resolution,
whose figure is the median of 3 measurements per backend and metric); each backend's speed-up
over ``trace``; repeatability (CV of anchored figures over repeats, each in a fresh process);
and how far the ranking of architectures changes between runtimes (Kendall's tau, and whether
the fastest for ``trace`` stay the fastest for the others). Not a test: run on a quiet machine.

    uv run --extra openvino --extra executorch python benchmarks/targets_cpu.py \\
        --samples 30 --repeats 5 --out results/targets_cpu
    uv run python benchmarks/targets_cpu.py --quick --out /tmp/targets_quick   # proves it runs
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS, ArchConfig, preset_name
from effvit_nas.arch.space import load_space
from effvit_nas.measure.actor import paired_measurement
from effvit_nas.measure.anchor import ANCHOR_RUNS, agreeing_runs
from effvit_nas.measure.backends import NAMES, get
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import DEFAULT_ANCHOR, BenchSettings, Measurement
from effvit_nas.measure.timing import measure, measure_ratio, prepare

CPU_BACKENDS = [b for b in NAMES if b not in ("compile", "tensorrt")]  # compile: minutes per model on CPU; tensorrt: GPUs
METRICS = ("throughput", "latency")
TOP = 5  # "the fastest": this many models by trace's figure


@dataclass(frozen=True)
class Plan:
    models: dict[str, ArchConfig]
    backends: list[str]
    timing: dict[str, float]  # BenchSettings' warmup_s, measure_s, window_s
    repeats: int
    repeat_models: list[str]
    metrics: tuple[str, ...] = METRICS
    anchor_runs: int = ANCHOR_RUNS
    repeat_backends: list[str] | None = None  # None: every backend of the table


def settings_for(backend: str, metric: str, timing: dict[str, float]) -> BenchSettings:
    return BenchSettings.for_device("cpu", backend=backend, metric=metric, **timing)


def anchored(
    name: str, cfg: ArchConfig, anchor: Measurement, anchor_cfg: ArchConfig, s: BenchSettings, fp: dict, anchor_forward: Any = None
) -> Measurement:
    """``cfg``'s anchored figure: its ratio to the anchor, timed alternately, x the anchor's
    figure (``anchor_forward``: one build of the anchor for every model of a table entry)."""
    r = measure_ratio(cfg, anchor_cfg, s, "cpu", fp, reference_forward=anchor_forward)
    return paired_measurement(cfg, r, anchor.throughput, f"anchor {DEFAULT_ANCHOR}", anchor.p90_ms)


def anchor_figure(anchor_cfg: ArchConfig, s: BenchSettings, fp: dict, runs: int = ANCHOR_RUNS) -> Measurement:
    """The anchor's figure as `bench` takes it (runs until 3 agree, :func:`agreeing_runs`); a
    single measurement for ``runs`` 1 (``--quick``)."""
    once = lambda: measure(anchor_cfg, s, "cpu", fp)  # noqa: E731
    return once() if runs == 1 else agreeing_runs(once)[0]


def figure(m: Measurement, metric: str) -> dict[str, float]:
    if metric == "throughput":
        return {"img_s": m.throughput, "ci_low": m.ci_low, "ci_high": m.ci_high}
    return {"p50_ms": m.p50_ms, "p90_ms": m.p90_ms, "p50_low": 1e3 / m.ci_high, "p50_high": 1e3 / m.ci_low}


def _table_entry(args: tuple) -> dict[str, Any]:
    """One backend and metric over every model, in a process of its own (a runtime's memory,
    e.g. OpenVINO's compiled models, goes back with the process: one process for all of them
    grew past 10 GB)."""
    b, metric, timing, cfgs, anchor_dict, runs = args
    anchor_cfg, fp = ArchConfig.from_dict(anchor_dict), fingerprint("cpu")
    s = settings_for(b, metric, timing)
    a = anchor_figure(anchor_cfg, s, fp, runs)
    # one anchor build for the whole entry: ExecuTorch lowers a model in about a minute, and a
    # build per model doubled the entry's time (figures on one build also share its speed)
    one = prepare(anchor_cfg, s, "cpu", s.batch) if b == "executorch" else None
    rows = {n: figure(anchored(n, ArchConfig.from_dict(c), a, anchor_cfg, s, fp, one), metric) for n, c in cfgs.items()}
    return {"anchor": figure(a, metric), "models": rows, "runtime": get(b).describe(s, False), "one_anchor_build": one is not None}


def table_run(plan: Plan, anchor_cfg: ArchConfig, partial: Path | None) -> dict[str, Any]:
    """Every (backend, metric, model) anchored figure; entries already in ``partial`` (a JSON
    file this run also writes after each entry) are kept, not measured again."""
    out: dict[str, Any] = json.loads(partial.read_text()) if partial and partial.exists() else {}
    cfgs = {n: c.to_dict() for n, c in plan.models.items()}
    t0 = time.time()
    for b in plan.backends:
        for metric in plan.metrics:
            if f"{b}/{metric}" in out:
                continue
            args = (b, metric, plan.timing, cfgs, anchor_cfg.to_dict(), plan.anchor_runs)
            with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                out[f"{b}/{metric}"] = pool.submit(_table_entry, args).result()
            if partial:
                partial.write_text(json.dumps(out))
            print(f"{b} {metric}: {len(cfgs)} models ({time.time() - t0:.0f} s)", flush=True)
    return out


def _one_repeat(args: tuple) -> dict[str, float]:
    """One repeat in a fresh process: the anchor measured afresh, then each model's anchored figure."""
    backend, metric, timing, cfgs, anchor_dict, runs = args
    anchor_cfg = ArchConfig.from_dict(anchor_dict)
    fp = fingerprint("cpu")
    s = settings_for(backend, metric, timing)
    a = anchor_figure(anchor_cfg, s, fp, runs)
    return {n: anchored(n, ArchConfig.from_dict(c), a, anchor_cfg, s, fp).throughput for n, c in cfgs.items()}


def repeatability(plan: Plan, anchor_cfg: ArchConfig) -> dict[str, Any]:
    """CV (%) of each subset model's anchored figure over ``plan.repeats`` fresh processes."""
    cfgs = {n: plan.models[n].to_dict() for n in plan.repeat_models}
    out: dict[str, Any] = {}
    ctx = multiprocessing.get_context("spawn")
    for b in plan.repeat_backends or plan.backends:
        for metric in plan.metrics:
            runs = []
            for _ in range(plan.repeats):  # one process per repeat: nothing carried over between them
                with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    runs.append(pool.submit(_one_repeat, (b, metric, plan.timing, cfgs, anchor_cfg.to_dict(), plan.anchor_runs)).result())
            out[f"{b}/{metric}"] = {
                n: {"cv_pct": 100 * statistics.stdev(v) / statistics.mean(v), "figures": v} for n in cfgs for v in [[r[n] for r in runs]]
            }
            print(f"repeats {b} {metric} done", flush=True)
    return out


def speed(row: dict[str, float], metric: str) -> float:
    """Higher is faster: img/s, or 1 / p50."""
    return row["img_s"] if metric == "throughput" else 1.0 / row["p50_ms"]


def rankings(table: dict[str, Any], backends: list[str]) -> dict[str, Any]:
    """Per metric and backend: speed-up over trace per model, Kendall's tau with trace, and the
    overlap of the ``TOP`` fastest."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        ref = table.get(f"trace/{metric}")
        if ref is None:
            continue
        for b in backends:
            if f"{b}/{metric}" not in table:  # a backend timed in one metric only
                continue
            rows = table[f"{b}/{metric}"]["models"]
            names = [n for n in ref["models"] if n in rows]  # a backend timed on a subset: compared on it
            base = np.array([speed(ref["models"][n], metric) for n in names])
            top = set(np.array(names)[np.argsort(-base)[:TOP]])
            v = np.array([speed(rows[n], metric) for n in names])
            tau = kendalltau(base, v).statistic if len(names) > 2 else float("nan")
            mine = set(np.array(names)[np.argsort(-v)[:TOP]])
            out[f"{b}/{metric}"] = {
                "speedup_over_trace": {n: float(x / y) for n, x, y in zip(names, v, base, strict=True)},
                "median_speedup": float(np.median(v / base)),
                "kendall_tau_vs_trace": float(tau),
                "top_overlap": f"{len(top & mine)}/{min(TOP, len(names))}",
                "models": len(names),
            }
    return out


def plan_of(args: argparse.Namespace) -> Plan:
    space = load_space(args.space)
    size = max(space.img_sizes)
    models = {n: p.replace(img_size=size, num_classes=space.num_classes) for n, p in PRESETS.items()}
    if args.quick:
        models = {"M0": models["M0"]}
    rng = np.random.default_rng(args.seed)
    while len(models) < (2 if args.quick else len(PRESETS) + args.samples):
        c = space.sample(rng)
        if preset_name(c) is None:
            models.setdefault(c.short_hash(), c)
    timing = {"warmup_s": 0.2, "measure_s": 0.5, "window_s": 0.05} if args.quick else {}
    backends = [b for b in args.backends.split(",") if get(b).available()]
    names = list(models)
    metrics = tuple(m for m in args.metrics.split(",") if m)
    if not metrics or set(metrics) - set(METRICS):
        raise SystemExit(f"--metrics: choose from {', '.join(METRICS)}, got {args.metrics!r}")
    if args.quick:
        return Plan(models, backends, timing, 2, names[:1], metrics=metrics, anchor_runs=1)
    subset = names[: int(args.repeat_models)] if args.repeat_models.isdigit() else args.repeat_models.split(",")
    again = args.repeat_backends.split(",") if args.repeat_backends else None
    return Plan(models, backends, timing, args.repeats, subset, metrics=metrics, repeat_backends=again)


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"# Deployment runtimes on this CPU\n\n`{command}`\n",
        f"Device: {result['device']['name']}, torch {result['device']['torch']}\n",
    ]
    for key, t in result["table"].items():
        b, metric = key.split("/")
        r = result["rankings"].get(key, {})
        lines.append(f"\n## {b}, {metric} ({t['runtime']})\n")
        lines.append(
            f"{r.get('models', len(t['models']))} models; Kendall tau vs trace: {r.get('kendall_tau_vs_trace', float('nan')):.3f}; top-{TOP} overlap with trace: {r.get('top_overlap', '-')}; median speed-up over trace: {r.get('median_speedup', float('nan')):.2f}x\n"
        )
        unit = "img/s (95 % interval)" if metric == "throughput" else "p50 ms (95 %), p90 ms"
        lines.append(f"| model | {unit} | speed-up over trace |\n|---|---|---|")
        for n, row in t["models"].items():
            cell = (
                f"{row['img_s']:.1f} ({row['ci_low']:.1f}-{row['ci_high']:.1f})"
                if metric == "throughput"
                else f"{row['p50_ms']:.3f} ({row['p50_low']:.3f}-{row['p50_high']:.3f}), {row['p90_ms']:.3f}"
            )
            lines.append(f"| {n} | {cell} | {r.get('speedup_over_trace', {}).get(n, float('nan')):.2f}x |")
    if not result["repeats"]:
        lines.append("\nRepeatability: not measured by this run (`--repeats` under 2); see benchmarks/runtime_repeatability.py.")
        return "\n".join(lines) + "\n"
    lines.append("\n## Repeatability (CV of anchored figures over fresh processes)\n\n| backend/metric | model | CV % |\n|---|---|---|")
    for key, rows in result["repeats"].items():
        lines += [f"| {key} | {n} | {v['cv_pct']:.2f} |" for n, v in rows.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="efficientvit")
    ap.add_argument("--samples", type=int, default=30, help="architectures sampled from the space besides M0-M5")
    ap.add_argument(
        "--repeats", type=int, default=5, help="fresh processes per repeatability figure (under 2: none; see runtime_repeatability.py)"
    )
    ap.add_argument("--repeat-models", default="3", help="the repeatability subset: N (the first N of M0-M5) or names (M1,M2)")
    ap.add_argument("--repeat-backends", default=None, help="backends of the repeatability figures [default: every one timed]")
    ap.add_argument("--partial", type=Path, default=None, help="keep finished table entries in this JSON file; a rerun skips them")
    ap.add_argument("--backends", default=",".join(CPU_BACKENDS))
    ap.add_argument("--metrics", default=",".join(METRICS), help="metrics of the table [default: throughput,latency]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 models, short timings, the anchor measured once, 2 repeats of 1 model: proves the script runs",
    )
    ap.add_argument("--out", type=Path, default=Path("results/targets_cpu"))
    args = ap.parse_args()
    plan = plan_of(args)
    fp = fingerprint("cpu")
    anchor_cfg = plan.models[DEFAULT_ANCHOR]
    table = table_run(plan, anchor_cfg, args.partial)
    result = {
        "device": fp,
        "plan": {**asdict(replace(plan, models={})), "models": {n: c.to_dict() for n, c in plan.models.items()}},
        "table": table,
        # every backend of the table, those a --partial file brought included
        "rankings": rankings(table, list(dict.fromkeys(k.split("/")[0] for k in table))),
        "repeats": repeatability(plan, anchor_cfg) if plan.repeats >= 2 else {},
    }
    import sys

    command = "uv run python benchmarks/targets_cpu.py " + " ".join(sys.argv[1:])
    write_report(args.out.with_suffix(".md"), markdown(result, command), result)
    print(markdown(result, command))


if __name__ == "__main__":
    main()
