"""Does every CPU backend's figure repeat across fresh processes with `bench`'s default flags?

For each backend and metric, one `effvit-nas bench` stores the anchor (M0 at the models'
resolution, measured 3 times, as the first use of a backend and protocol does), then each
repeat is a new `effvit-nas bench MODELS --backend B --metric M --fresh --json` process with
nothing else changed: a fresh Ray, a fresh model build and conversion, the stored anchor. The
CV (%) of each model's figure over the repeats is what a user who reruns `bench` sees (the
goal of issue #47: within 2 %). The throughput figure is images/s at batch 16 with 1 thread; the
latency figure is the batch-1 p50 (ms), p90 reported beside it. Run on a quiet machine:

    uv sync --extra openvino --extra executorch
    uv run python benchmarks/runtime_repeatability.py --models M1,M3 --repeats 5 \\
        --out results/runtime_repeatability
    uv run python benchmarks/runtime_repeatability.py --quick --out /tmp/rep_quick   # proves it runs

``--partial FILE`` keeps each finished backend/metric entry, so a stopped run resumes, and runs
with different ``--backends``/``--models`` collect into one report. ``--section NAME`` writes the
run as a section of ``--out`` (before/after runs in one report). ``--watch`` looks at each
repeat's device actor every 0.5 s (from this process, through ``/proc``): the CPU it ran on and
how much of its memory lay on huge pages, so a process whose figure lands apart shows what it
drew.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import write_report, write_section
from effvit_nas.measure.backends import NAMES, get
from effvit_nas.measure.heap import memory_kb

CPU_BACKENDS = [b for b in NAMES if b not in ("compile", "tensorrt")]  # compile: minutes per model on CPU; tensorrt: GPUs
METRICS = ("throughput", "latency")
QUICK = ["--warmup", "0.2", "--duration", "0.5"]


def bench(
    models: list[str],
    backend: str,
    metric: str,
    storage: str,
    extra: list[str],
    env: dict[str, str] | None = None,
    watch: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One `effvit-nas bench` in a process of its own (with ``env`` as its environment, default
    this one's); its JSON records, one per model. ``watch``: a dict to fill with what its device
    actor drew (:func:`_look_at_actor`, every 0.5 s while it runs)."""
    cmd = [sys.executable, "-m", "effvit_nas.cli", "bench", *models, "--backend", backend, "--metric", metric]
    cmd += ["--storage", storage, "--json", *extra]
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:  # files: no pipe to fill
        p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True, env=env)
        while watch is not None and p.poll() is None:
            time.sleep(0.5)
            _look_at_actor(watch)
        p.wait()
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if p.returncode:  # its own error line, which CalledProcessError would not show
        raise SystemExit(f"{' '.join(cmd[3:])}: exit {p.returncode}: {err.strip()[-2000:]}")
    rec = json.loads(out[out.index("[") if len(models) > 1 else out.index("{") :])
    return rec if isinstance(rec, list) else [rec]


def _look_at_actor(draw: dict[str, Any]) -> None:
    """One look at the device actor's process (Ray titles it ``ray::DeviceWorker``): adds the CPU
    it last ran on to ``draw["cpus"]``, and keeps its anonymous memory and the part of it on huge
    pages (kB) from the look where it held the most (its models built, not yet torn down)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if "DeviceWorker" not in Path(f"/proc/{pid}/cmdline").read_text():
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            anon, huge = memory_kb(pid)
        except OSError:  # gone, or not ours to read
            continue
        draw.setdefault("cpus", []).append(int(stat[stat.rindex(")") + 2 :].split()[36]))
        if anon > draw.get("anon_kb", 0):
            draw.update(anon_kb=anon, huge_kb=huge)


def drew(draw: dict[str, Any]) -> dict[str, Any]:
    """What a watched process's actor drew: the CPU it ran on most and in what share of the looks,
    and the share of its memory on huge pages (%)."""
    if not draw.get("cpus"):
        return {}
    cpu, n = collections.Counter(draw["cpus"]).most_common(1)[0]
    return {
        "cpu": cpu,
        "cpu_share": n / len(draw["cpus"]),
        "anon_mb": draw["anon_kb"] / 1024,
        "huge_pct": 100 * draw["huge_kb"] / max(draw["anon_kb"], 1),
    }


def value(rec: dict[str, Any], metric: str) -> float:
    return rec["throughput"] if metric == "throughput" else rec["p50_ms"]


def cv(xs: list[float]) -> float:
    return 100 * statistics.stdev(xs) / statistics.mean(xs)


def entry(models: list[str], backend: str, metric: str, repeats: int, extra: list[str], watch: bool = False) -> dict[str, Any]:
    """The anchor stored once, then ``repeats`` fresh `bench` processes re-measuring ``models``
    (``watch``: and what each one's device actor drew)."""
    with tempfile.TemporaryDirectory() as d:
        storage = f"sqlite:///{d}/store.db"
        t0 = time.time()
        first = bench(models, backend, metric, storage, extra)  # stores the anchor (3 runs) and a first figure
        runs, secs, draws = [], [], []
        for _ in range(repeats):
            t = time.time()
            draw: dict[str, Any] | None = {} if watch else None
            runs.append(bench(models, backend, metric, storage, [*extra, "--fresh"], watch=draw))
            secs.append(time.time() - t)
            draws.append(drew(draw or {}))
    rows = {}
    for i, name in enumerate(models):
        figs = [value(r[i], metric) for r in runs]
        rows[name] = {"figures": figs, "cv_pct": cv(figs), "first": value(first[i], metric)}
        if metric == "latency":
            rows[name]["p90_ms"] = [r[i]["p90_ms"] for r in runs]
            rows[name]["p90_cv_pct"] = cv(rows[name]["p90_ms"])
    out = {"models": rows, "seconds_per_repeat": statistics.median(secs), "seconds": time.time() - t0, "note": runs[0][0].get("note")}
    return out | ({"draws": draws} if watch else {})


TITLE = "Repeatability of `bench`'s default figures across fresh processes"


def markdown(result: dict[str, Any], command: str, heading: str = TITLE) -> str:
    lines = [
        f"# {heading}\n",
        f"`{command}`\n",
        "Each row: one backend and metric, the anchor stored by a first `bench`, then each repeat a "
        "fresh `effvit-nas bench MODEL --backend B --metric M --fresh` process (default flags "
        "otherwise: anchored, each backend's own conversion, 1 thread, batch 16 for throughput, "
        "batch 1 for latency). Goal (#47): CV within 2 %.\n",
        (
            f"Flags added to every `bench`: `{result['bench_args']}`."
            if result.get("bench_args")
            else "Default flags (nothing added to `bench`)."
        )
        + (f" Measured {result['when']}.\n" if result.get("when") else "\n"),
        "| backend | metric | model | figures | CV % | within 2 % | p90 CV % |\n|---|---|---|---|---|---|---|",
    ]
    for key, e in result["entries"].items():
        b, metric = key.split("/")
        unit = "img/s" if metric == "throughput" else "ms p50"
        for name, r in e["models"].items():
            figs = ", ".join(f"{x:.4g}" for x in r["figures"])
            p90 = f"{r['p90_cv_pct']:.2f}" if "p90_cv_pct" in r else "-"
            lines.append(f"| {b} | {metric} | {name} | {figs} {unit} | {r['cv_pct']:.2f} | {'yes' if r['cv_pct'] <= 2 else 'NO'} | {p90} |")
    for key, e in result["entries"].items():
        if e.get("draws"):
            said = [
                f"{i + 1}: CPU {d['cpu']} ({100 * d['cpu_share']:.0f} %), {d['huge_pct']:.0f} % of {d['anon_mb']:.0f} MB"
                if d
                else f"{i + 1}: -"
                for i, d in enumerate(e["draws"])
            ]
            lines.append(
                f"\n{key}, each repeat's device actor (the CPU it ran on most, in what share of the looks; its memory on huge pages): "
                + "; ".join(said)
                + "."
            )
    worst = max((r["cv_pct"], k, n) for k, e in result["entries"].items() for n, r in e["models"].items())
    lines.append(f"\nWorst CV: {worst[0]:.2f} % ({worst[1]}, {worst[2]}).\n")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="M1,M3", help="presets to re-measure (default M1,M3: the anchor is M0)")
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per backend and metric (default 5)")
    ap.add_argument("--backends", default=",".join(CPU_BACKENDS))
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--partial", type=Path, default=None, help="keep finished entries in this JSON file; a rerun skips them")
    ap.add_argument("--bench-args", default="", help="flags added to every `bench` (e.g. '--pair-iters 4'): a protocol against the default")
    ap.add_argument(
        "--watch", action="store_true", help="look at each repeat's device actor every 0.5 s: its CPU and its memory on huge pages"
    )
    ap.add_argument("--quick", action="store_true", help="2 repeats, short timing, trace throughput only: proves the script runs")
    ap.add_argument("--out", type=Path, default=Path("results/runtime_repeatability"))
    ap.add_argument(
        "--section", default=None, help="write this run as a section of --out, headed so, keeping its others (before/after runs)"
    )
    args = ap.parse_args()
    backends = ["trace"] if args.quick else [b for b in args.backends.split(",") if get(b).available()]
    metrics = ["throughput"] if args.quick else args.metrics.split(",")
    if args.repeats < 2 and not args.quick:
        ap.error(f"--repeats must be at least 2 for a spread, got {args.repeats}")
    repeats, extra = (2, list(QUICK)) if args.quick else (args.repeats, [])
    extra += args.bench_args.split()
    models = args.models.split(",")
    done: dict[str, Any] = json.loads(args.partial.read_text()) if args.partial and args.partial.exists() else {}
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    for b in backends:
        for metric in metrics:
            if f"{b}/{metric}" in done:
                continue
            done[f"{b}/{metric}"] = entry(models, b, metric, repeats, extra, args.watch)
            if args.partial:
                args.partial.write_text(json.dumps(done))
            print(
                f"{b} {metric}: " + ", ".join(f"{n} CV {r['cv_pct']:.2f} %" for n, r in done[f"{b}/{metric}"]["models"].items()), flush=True
            )
    when = f"{started} to {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"  # this run's; --partial entries may be older
    result = {"entries": done, "repeats": repeats, "bench_args": args.bench_args, "when": when}
    command = "uv run python benchmarks/runtime_repeatability.py " + shlex.join(sys.argv[1:])
    if args.section:
        write_section(args.out.with_suffix(".md"), args.section, TITLE, markdown(result, command, args.section), result)
    else:
        write_report(args.out.with_suffix(".md"), markdown(result, command), result)


if __name__ == "__main__":
    main()
