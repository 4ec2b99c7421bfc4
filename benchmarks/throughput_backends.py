"""M0-M5 throughput on this CPU for every backend, with timm's fused + traced model as the
reference measured in the same run, using the tool's own protocol (effvit_nas.measure.timing).

Each round measures, for every model, timm's reference and then each of our backends, so
drift hits all alike; figures are medians over rounds of the per-measurement medians. Not a
test: numbers are noisy. Also reports how the CPU ordering of M0-M5 compares with the paper's
(V100) ordering.

    uv run python benchmarks/throughput_backends.py --rounds 2 --out results/throughput_cpu_backends.md

Claim reproduced (docs/results/measurement-noise.md): every CPU backend against timm.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import measure, summarize, time_forward
from effvit_nas.model.deploy import trace_for_inference
from effvit_nas.model.efficientvit import fuse_modules
from effvit_nas.model.timm_compat import create_timm_model

PAPER_V100 = {"M0": 27644, "M1": 20093, "M2": 18218, "M3": 16644, "M4": 15914, "M5": 10621}


def timm_reference(name: str, settings: BenchSettings) -> float:
    """timm's model, fused and traced as in the official speed test, timed by our protocol."""
    torch.manual_seed(0)
    model = create_timm_model(PRESETS[name]).eval()
    with torch.no_grad():
        fuse_modules(model)
    x = torch.randn(settings.batch, 3, 224, 224)
    traced = trace_for_inference(model, x, optimize=False)

    def forward():
        with torch.inference_mode():
            return traced(x)

    prev = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return summarize(time_forward(forward, settings, lambda: None), settings.batch)["throughput"]
    finally:
        torch.set_num_threads(prev)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default="eager,trace,compile,onnxruntime")  # the PyTorch ones and ORT, as its results file
    ap.add_argument("--models", default=",".join(PRESETS))
    ap.add_argument("--out", type=Path, default=Path("results/throughput_cpu_backends.md"))
    return ap.parse_args()


def measure_rounds(names: list[str], backends: list[str], rounds: int, fp: dict[str, Any]):
    """Images/s and seconds of every (model, backend) per round, timm's reference as backend ``timm``."""
    base = BenchSettings.for_device("cpu")
    ips: dict[tuple[str, str], list[float]] = {}
    secs: dict[tuple[str, str], list[float]] = {}
    t0 = time.time()
    for r in range(rounds):
        for n in names:
            ips.setdefault((n, "timm"), []).append(timm_reference(n, base))
            for b in backends:
                m = measure(PRESETS[n], BenchSettings.for_device("cpu", backend=b), "cpu", fp)
                ips.setdefault((n, b), []).append(m.throughput)
                secs.setdefault((n, b), []).append(m.seconds)
            print(f"round {r + 1} {n} done ({time.time() - t0:.0f} s)", flush=True)
    return ips, secs


def ordering_lines(names: list[str], backends: list[str], med: dict[tuple[str, str], float]) -> list[str]:
    """The fastest-first order of M0-M5 per backend, next to the paper's V100 order."""
    order = {b: sorted(names, key=lambda n: -med[(n, b)]) for b in ["timm", *backends]}
    paper_order = sorted(names, key=lambda n: -PAPER_V100[n])
    return [
        f"- paper (V100, batch 2048 fp16): {' > '.join(paper_order)}",
        *[
            f"- {b} on this CPU: {' > '.join(o)}" + ("  (same as the paper)" if o == paper_order else "  (differs from the paper)")
            for b, o in order.items()
        ],
    ]


def report(args: argparse.Namespace, names: list[str], backends: list[str], fp: dict[str, Any], med, secs) -> list[str]:
    """The markdown report, one line per item."""
    rows = []
    for n in names:
        cells = [f"{med[(n, 'timm')]:.0f}"] + [f"{med[(n, b)]:.0f} ({med[(n, b)] / med[(n, 'timm')]:.2f}x)" for b in backends]
        rows.append(f"| {n} | " + " | ".join(cells) + f" | {PAPER_V100[n]:,} |")
    s = BenchSettings.for_device("cpu")
    setting = (
        f"batch {s.batch}, 224x224, {s.precision}, {s.threads} thread, warm-up {s.warmup_s:g} s + {s.measure_s:g} s timed per measurement"
    )
    sec_line = ", ".join(f"{b} {statistics.median(v for (n, bb), vs in secs.items() if bb == b for v in vs):.1f} s" for b in backends)
    return [
        "# M0-M5 throughput on this CPU, every backend, timm reference in the same run",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores, {fp['isa']}), torch {fp['torch']}, fingerprint `{fp['id']}`.",
        f"Protocol (the tool's default, `effvit-nas bench`): {setting}; median over {args.rounds} rounds; images/s.",
        "In parentheses: ratio to timm's fused + traced model (the official speed test's form) measured in the same run.",
        "",
        "| model | timm fused+traced | " + " | ".join(f"ours {b}" for b in backends) + " | paper V100 img/s |",
        "|---|" + "---|" * (len(backends) + 2),
        *rows,
        "",
        "Ordering (fastest first):",
        "",
        *ordering_lines(names, backends, med),
        "",
        f"Median seconds per measurement incl. build, backend preparation and warm-up: {sec_line}.",
        "The paper's CPU figure for M0 is 228 img/s (Xeon E5-2690 v4, one thread) and 340 img/s as ONNX (1.49x).",
        "",
        f"Command: `uv run python benchmarks/throughput_backends.py --rounds {args.rounds} --out {args.out}`",
    ]


def main() -> None:
    args = parse_args()
    backends = args.backends.split(",")
    names = args.models.split(",")
    fp = fingerprint("cpu")
    ips, secs = measure_rounds(names, backends, args.rounds, fp)
    med = {k: statistics.median(v) for k, v in ips.items()}
    md = report(args, names, backends, fp, med, secs)
    rounds = {f"{n}/{b}": v for (n, b), v in ips.items()}
    seconds = {f"{n}/{b}": v for (n, b), v in secs.items()}  # behind the report's seconds line
    record = {"device": fp, "median_ips": {f"{n}/{b}": v for (n, b), v in med.items()}, "rounds": rounds, "seconds": seconds}
    write_report(args.out, "\n".join(md), record)
    print("\n".join(md))


if __name__ == "__main__":
    main()
