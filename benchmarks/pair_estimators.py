"""Which figure of a ratio-mode timing repeats best across fresh processes: the trimmed mean of
the pairs' ratios (the default), a ratio of the two models' quantile iterations, or the anchor's
time plus the gap between those quantiles?

Each of ``--processes`` fresh processes builds the anchor (M0) and every candidate at 224 px and
times each (candidate, anchor) pair ``--timings`` times as `bench` times it (`BenchSettings.for_device`,
batch-1 latency by default), keeping every iteration's time; the estimators are then computed
from the same iterations, so they differ in nothing but the arithmetic. Reported per
candidate and estimator: the CV of the figure over every timing, over each process's first
timing (what a fresh `bench` sees), and its correlation with the anchor's median iteration (a
figure that follows the machine's phase has a high one). Run on a quiet machine:

    taskset -c 0 uv run python benchmarks/pair_estimators.py --processes 6 --timings 4 \\
        --backend executorch --raw /tmp/pair_raw
    uv run python benchmarks/pair_estimators.py --report-only  # every backend, from the raw record

Each backend is a section of one report (``results/pair_estimators_cpu.md``; a throughput run
is ``BACKEND throughput``), its iterations a key of one raw record beside it; a run replaces
its section and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write_section

QUANTILES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)


def one_process(out: Path, backend: str, metric: str, candidates: list[str], timings: int) -> None:
    """This process's share: builds, then ``timings`` rounds of every (candidate, M0) pair."""
    from effvit_nas.arch.config import PRESETS
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.measure.timing import on_device, prepare, time_pair

    s = BenchSettings.for_device("cpu", backend=backend, metric=metric)
    record: dict[str, Any] = {"settings": str(s), "timings": []}
    with on_device(s, "cpu") as (sync, timer, cpu):
        start = time.perf_counter()
        built = {n: prepare(PRESETS[n], s, "cpu", s.batch) for n in ["M0", *candidates]}
        record["build_s"] = time.perf_counter() - start
        for k in range(timings):
            for c in candidates:
                pair = time_pair(built[c], built["M0"], s, sync, timer, cpu)
                record["timings"].append(
                    {
                        "cand": c,
                        "k": k,
                        "t": time.time(),
                        "est": pair.estimate()[0],
                        "c": [[round(t, 7) for t in w.times] for w in pair.candidate.windows],
                        "r": [[round(t, 7) for t in w.times] for w in pair.reference.windows],
                        "dist": [
                            cw.disturbed or rw.disturbed for cw, rw in zip(pair.candidate.windows, pair.reference.windows, strict=True)
                        ],
                    }
                )
    out.write_text(json.dumps(record))


def figures(timing: dict[str, Any], anchor_s: float) -> dict[str, float]:
    """Every estimator's figure (candidate ms) from one timing's iterations; ``anchor_s``: the
    anchor's stored seconds per iteration, which ratios scale and gaps are added to."""
    c, r = kept(timing)
    out = {"pairs' ratios, trimmed mean": 1e3 * anchor_s / timing["est"]}
    for q in QUANTILES:
        out[f"ratio of q{q:g}"] = 1e3 * anchor_s * np.quantile(c, q) / np.quantile(r, q)
        out[f"gap of q{q:g}"] = 1e3 * (anchor_s + np.quantile(c, q) - np.quantile(r, q))
    out["anchor median ms"] = 1e3 * float(np.median(r))
    return out


def kept(timing: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's and the anchor's iterations (s) of one timing's undisturbed pairs (all
    of them where every pair was disturbed), as `bench` keeps them."""
    keep = [i for i, d in enumerate(timing["dist"]) if not d] or list(range(len(timing["dist"])))
    return tuple(np.concatenate([timing[side][i] for i in keep]) for side in ("c", "r"))  # type: ignore[return-value]


def cv(values: np.ndarray) -> float:
    return float(100 * values.std(ddof=1) / values.mean())


def analyse(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per candidate and estimator: CVs (all timings, first per process) and the correlation
    with the anchor's median ms; the anchor's time is the median of its median iterations over
    every timing (as `bench` stores one anchor figure per device)."""
    anchor_s = float(np.median([np.median(np.concatenate(t["r"])) for p in processes for t in p["timings"]]))
    out: dict[str, Any] = {"anchor_ms": 1e3 * anchor_s, "candidates": {}}
    for cand in dict.fromkeys(t["cand"] for p in processes for t in p["timings"]):
        per = [[figures(t, anchor_s) for t in p["timings"] if t["cand"] == cand] for p in processes]
        rows: dict[str, Any] = {}
        phase = np.asarray([f["anchor median ms"] for fs in per for f in fs])
        for name in per[0][0]:
            if name == "anchor median ms":
                continue
            every = np.asarray([f[name] for fs in per for f in fs])
            first = np.asarray([fs[0][name] for fs in per])
            rows[name] = {
                "mean_ms": float(every.mean()),
                "cv_all_pct": cv(every),
                "cv_first_pct": cv(first),
                "corr_anchor_ms": float(np.corrcoef(every, phase)[0, 1]),
            }
        out["candidates"][cand] = {"timings": len(phase), "rows": rows}
    out["levels"] = levels(processes)
    out["two_anchors"] = two_anchors(processes)
    return out


def two_anchors(processes: list[dict[str, Any]], near: str = "M1", far: str = "M5") -> dict[str, Any]:
    """Would a second, larger anchor help ``far``? Its CV over the timings (%) as a gap to M0
    (the default), as a gap to ``near`` (as if it were a second anchor, timed just before
    ``far`` in the same round) and through a line fitted per round to both anchors' fastest
    5 % against their usual ones (a slow phase as an affine map of every model's time).
    Empty without both candidates."""
    rounds: dict[tuple[int, int], dict[str, tuple[float, float]]] = {}
    for i, p in enumerate(processes):
        for t in p["timings"]:
            rounds.setdefault((i, t["k"]), {})[t["cand"]] = tuple(1e3 * np.quantile(x, 0.05) for x in kept(t))
    both = [r for r in rounds.values() if near in r and far in r]
    if not both:
        return {}
    n1, m0_near, f5, m0_far = (np.asarray(x) for x in zip(*[(*r[near], *r[far]) for r in both], strict=True))
    u0, u1 = float(np.median(np.r_[m0_near, m0_far])), float(np.median(n1))  # the anchors' usual fast times
    slope = (n1 - m0_far) / (u1 - u0)
    return {
        "near": near,
        "far": far,
        "rounds": len(both),
        "gap_to_M0_cv_pct": cv(f5 - m0_far + u0),
        "gap_to_near_cv_pct": cv(f5 - n1 + u1),
        "line_through_both_cv_pct": cv((f5 - (m0_far - slope * u0)) / slope),
    }


def levels(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Each model's fastest 5 % and median iteration over the timings (ms): mean and SD. A slow
    phase that adds the same ms to every model leaves equal SDs."""
    times: dict[str, list[list[float]]] = {}
    for t in (t for p in processes for t in p["timings"]):
        for side, name in (("c", t["cand"]), ("r", "M0")):
            times.setdefault(name, []).append(np.concatenate(t[side]))
    out = {}
    for name, runs in times.items():
        q05, q50 = (np.asarray([1e3 * np.quantile(r, q) for r in runs]) for q in (0.05, 0.5))
        out[name] = {
            "q0.05_mean_ms": float(q05.mean()),
            "q0.05_sd_ms": float(q05.std(ddof=1)),
            "median_mean_ms": float(q50.mean()),
            "median_sd_ms": float(q50.std(ddof=1)),
        }
    return out


def markdown(result: dict[str, Any], command: str, when: str) -> str:
    lines = [
        f"# Ratio-mode estimators over fresh processes ({result['protocol']})",
        "",
        f"`{command}` ({when}). {result['processes']} fresh processes, {result['timings']} timings of each pair in each; "
        f"every estimator computed from the same iterations. Figures in ms on the anchor's time ({result['anchor_ms']:.3f} ms, "
        "the median of M0's median iterations). CV first: over each process's first timing, as a fresh `bench` times it.",
        "",
    ]
    lines += [
        "## Where a slow phase lands: each model's iterations over the timings",
        "",
        "| model | fastest 5 %: mean ms | SD ms | median: mean ms | SD ms |",
        "|---|---|---|---|---|",
        *(
            f"| {n} | {v['q0.05_mean_ms']:.3f} | {v['q0.05_sd_ms']:.3f} | {v['median_mean_ms']:.3f} | {v['median_sd_ms']:.3f} |"
            for n, v in result["levels"].items()
        ),
        "",
    ]
    if result.get("two_anchors"):
        t = result["two_anchors"]
        lines += [
            f"## A second, larger anchor for {t['far']}?",
            "",
            f"{t['far']}'s figure over {t['rounds']} rounds (the fastest 5 %; {t['near']} as the second anchor, timed in the "
            f"same round just before {t['far']}'s pair): CV as a gap to M0 (the default) {t['gap_to_M0_cv_pct']:.2f} %, as a gap "
            f"to {t['near']} {t['gap_to_near_cv_pct']:.2f} %, through a line fitted to both anchors' times in the round "
            f"{t['line_through_both_cv_pct']:.2f} %.",
            "",
        ]
    for cand, c in result["candidates"].items():
        lines += [
            f"## {cand} against M0 ({c['timings']} timings)",
            "",
            "| estimator | mean ms | CV all | CV first | corr. with M0's ms |",
            "|---|---|---|---|---|",
        ]
        for name, r in c["rows"].items():
            lines.append(
                f"| {name} | {r['mean_ms']:.3f} | {r['cv_all_pct']:.2f} % | {r['cv_first_pct']:.2f} % | {r['corr_anchor_ms']:+.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _protocol(settings: str) -> str:
    """``backend, metric`` from a process's stored settings (their repr)."""
    fields = dict(part.split("=", 1) for part in settings.removeprefix("BenchSettings(").removesuffix(")").split(", "))
    metric = "batch-1 latency" if fields["metric"].strip("'") == "latency" else "throughput"
    return f"{fields['backend'].strip(chr(39))}, {metric}"


TITLE = "Ratio-mode estimators over fresh processes, per backend"


def measure(a: argparse.Namespace) -> dict[str, Any]:
    """``a.processes`` fresh processes, each timing every pair ``a.timings`` times; the raw record."""
    from effvit_nas.measure.heap import timing_env
    from effvit_nas.measure.settings import BenchSettings

    folder = a.raw or Path(tempfile.mkdtemp(prefix="pair_estimators_"))  # kept in the raw record
    folder.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for i in range(a.processes):
        out = folder / f"process_{i + 1}.json"
        args = ["--one", str(out), "--backend", a.backend, "--metric", a.metric, "--candidates", a.candidates, "--timings", str(a.timings)]
        # started as a device actor is, on the pages `bench` times with by default
        subprocess.run([sys.executable, __file__, *args], check=True, env=timing_env(BenchSettings.pages))
    return {
        "command": shlex.join(["uv", "run", "python", "benchmarks/pair_estimators.py", *sys.argv[1:]]),
        "when": f"{started}-{time.strftime('%H:%M UTC', time.gmtime())}",
        "processes": [json.loads((folder / f"process_{i + 1}.json").read_text()) for i in range(a.processes)],
    }


def report(out: Path, section: str, kept: dict[str, Any]) -> None:
    """Section ``section`` of the report ``out``, computed from its raw record ``kept``."""
    result = analyse(kept["processes"])
    result.update(
        processes=len(kept["processes"]),
        timings=len(kept["processes"][0]["timings"]) // len(result["candidates"]),
        protocol=_protocol(kept["processes"][0]["settings"]),
    )
    record = {**result, "command": kept["command"], "when": kept["when"]}
    write_section(out.with_suffix(".md"), section, TITLE, markdown(result, kept["command"], kept["when"]), record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--timings", type=int, default=4, help="timings of each pair per process (default 4)")
    ap.add_argument("--backend", default="executorch")
    ap.add_argument("--metric", default="latency", choices=("latency", "throughput"))
    ap.add_argument("--candidates", default="M1,M5")
    ap.add_argument("--raw", type=Path, default=None, help="folder for each process's iterations (default: a new temporary one)")
    ap.add_argument("--one", type=Path, default=None, help=argparse.SUPPRESS)  # a worker process's output
    ap.add_argument("--report-only", action="store_true", help="recompute every backend's section from the raw record kept beside --out")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("results/pair_estimators_cpu"),
        help="the report; one section per backend (and metric, for throughput)",
    )
    a = ap.parse_args()
    if a.one is not None:
        one_process(a.one, a.backend, a.metric, [c for c in a.candidates.split(",") if c], a.timings)
        return
    raw = a.out.parent / f"{a.out.name}_raw.json"  # every section's iterations, by its key
    if a.report_only and not raw.exists():
        ap.error(f"--report-only: no raw record at {raw}")
    kept = json.loads(raw.read_text()) if raw.exists() else {}
    key = a.backend if a.metric == "latency" else f"{a.backend} {a.metric}"
    if not a.report_only:
        kept[key] = measure(a)
        raw.write_text(json.dumps(kept))
    for section in kept if a.report_only else [key]:
        report(a.out, section, kept[section])


if __name__ == "__main__":
    main()
