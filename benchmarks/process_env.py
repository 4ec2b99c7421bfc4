"""Does a process-wide setting change how `bench`'s default figure repeats across fresh processes?

Some causes of a figure that differs from process to process are fixed when a process starts,
before any of our code runs: where the C library and the kernel put a model's weights (4 KiB
pages scattered over physical memory, or 2 MiB transparent huge pages), which CPU a thread
starts on. Such a setting is an environment variable read at process start (e.g. glibc's
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, which asks the kernel for huge pages under
everything malloc hands out where transparent huge pages are ``madvise``-only).

Each condition is a set of environment variables given to every `effvit-nas bench` process
(and so to the Ray it starts and the device actor that times), and flags added to it
(``--flags NAME=FLAGS``: a setting that starts the device actor differently, such as
``--pages system``). Each condition has a store of
its own, whose anchor is measured once under that condition; then each round runs one fresh
`bench MODELS --backend B --metric M --fresh` per condition, in an order that rotates from round
to round, so a slow hour of the machine falls on every condition alike. Run on a quiet machine:

    uv run python benchmarks/process_env.py --backend openvino --metric latency --models M1,M5 \\
        --rounds 10 --condition huge= --condition system= --flags "system=--pages system" \\
        --out results/hugepages_cpu

Each run is a section of ``--out`` (``--section``, default ``BACKEND METRIC``). The section
``onnxruntime latency`` of ``results/hugepages_cpu.md`` was measured before ``--pages`` existed,
when every actor started on the system's pages, with ``--condition default= --condition
hugetlb=GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, and written to a report of its own then.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import write_section
from benchmarks.runtime_repeatability import bench, cv, value

TITLE = "`bench`'s default figure across fresh processes, per process-wide setting"


def condition(text: str) -> tuple[str, dict[str, str]]:
    """``NAME=VAR=VALUE[,VAR=VALUE...]`` (or ``NAME=`` for no change) as (name, variables)."""
    name, _, rest = text.partition("=")
    pairs = [p.partition("=") for p in rest.split(",") if p]
    if not name or any(not k or not sep for k, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"--condition wants NAME=VAR=VALUE[,VAR=VALUE...] or NAME=, got {text!r}")
    return name, {k: v for k, _, v in pairs}


def rounds(args: argparse.Namespace, stores: dict[str, str]) -> list[dict[str, Any]]:
    """One record per fresh `bench` process: round, condition, figure per model."""
    names, records = list(args.condition), []
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            env = {**os.environ, **args.condition[name]}
            recs = bench(args.models, args.backend, args.metric, stores[name], [*args.flags.get(name, []), "--fresh"], env=env)
            figs = {m: value(rec, args.metric) for m, rec in zip(args.models, recs, strict=True)}
            records.append({"round": r, "condition": name, "figures": figs, "at": time.time()})
            print(f"round {r} {name}: " + ", ".join(f"{m} {x:.4g}" for m, x in figs.items()), flush=True)
    return records


def summary(records: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in args.condition:
        for m in args.models:
            xs = [r["figures"][m] for r in records if r["condition"] == name]
            out[f"{name}/{m}"] = {"figures": xs, "median": statistics.median(xs), "cv_pct": cv(xs)}
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    unit = "img/s" if result["metric"] == "throughput" else "ms p50"
    lines = [
        f"# {TITLE} ({result['backend']}, {result['metric']})\n",
        f"`{command}`\n",
        f"Measured {result['when']}. Conditions (environment and flags of every `bench` process): "
        + "; ".join(f"**{n}** `{_said(env, result['flags'].get(n, ''))}`" for n, env in result["conditions"].items())
        + f". {result['rounds']} rounds; the conditions' order rotates each round; each condition's anchor is its own.\n",
        f"| condition | model | figures ({unit}) | median | CV % |",
        "|---|---|---|---|---|",
    ]
    for key, s in result["summary"].items():
        name, model = key.split("/")
        figs = ", ".join(f"{x:.4g}" for x in s["figures"])
        lines.append(f"| {name} | {model} | {figs} | {s['median']:.4g} | {s['cv_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def _said(env: dict[str, str], flags: str) -> str:
    return " ".join([*(f"{k}={v}" for k, v in env.items()), *([f"bench {flags}"] if flags else [])]) or "bench's defaults"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--metric", default="latency", choices=("throughput", "latency"))
    ap.add_argument("--models", type=lambda s: s.split(","), default=["M1", "M5"])
    ap.add_argument("--rounds", type=int, default=10, help="fresh processes per condition (default 10)")
    ap.add_argument("--condition", type=condition, action="append", required=True, help="NAME=VAR=VALUE[,...]; repeat; NAME= for none")
    ap.add_argument("--flags", action="append", default=[], help="NAME=FLAGS: `bench` flags of condition NAME; repeat")
    ap.add_argument("--out", type=Path, required=True, help="the report; this run is one section of it")
    ap.add_argument("--section", default=None, help="this run's section of --out (default 'BACKEND METRIC'); one of that key is replaced")
    args = ap.parse_args()
    args.condition = dict(args.condition)
    args.flags = {n: f.split() for n, _, f in (t.partition("=") for t in args.flags)}
    if set(args.flags) - set(args.condition):
        ap.error(f"--flags names no --condition: {', '.join(sorted(set(args.flags) - set(args.condition)))}")
    if len(args.condition) < 2 or args.rounds < 2:
        ap.error("--condition twice at least (names differ) and --rounds 2 at least, for a comparison with a spread")
    t0 = time.gmtime()
    with tempfile.TemporaryDirectory() as d:
        stores = {n: f"sqlite:///{d}/{n}.db" for n in args.condition}
        for n, env in args.condition.items():  # each condition's anchor, measured under it
            bench(args.models, args.backend, args.metric, stores[n], args.flags.get(n, []), env={**os.environ, **env})
        records = rounds(args, stores)
    when = f"{time.strftime('%Y-%m-%d %H:%M', t0)}-{time.strftime('%H:%M', time.gmtime())} UTC"
    result = {
        "backend": args.backend,
        "metric": args.metric,
        "rounds": args.rounds,
        "conditions": args.condition,
        "flags": {n: " ".join(f) for n, f in args.flags.items()},
        "when": when,
        "records": records,
        "summary": summary(records, args),
    }
    command = "uv run python benchmarks/process_env.py " + shlex.join(sys.argv[1:])
    section = args.section or f"{args.backend} {args.metric}"
    write_section(args.out.with_suffix(".md"), section, TITLE, markdown(result, command), result)


if __name__ == "__main__":
    main()
