"""CPU speed of our deployment-form M0-M5 against timm's fused + traced models.

Protocol (the paper's CPU setting): batch 16, 224 x 224, fp32, one thread, random weights,
conv+BN fused. All variants are measured interleaved in one process: each round times every
variant in turn, so drift of this shared machine hits all of them alike; speedups are the
median over rounds of the per-round ratio (ours / timm). Not a test: numbers are noisy.

    uv run python benchmarks/model_speed.py --rounds 7 --out results/model_speed_cpu.md
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import cpu_model
from effvit_nas.model.deploy import trace_for_inference
from effvit_nas.model.efficientvit import build_model, fuse_modules
from effvit_nas.model.timm_compat import create_timm_model

VARIANTS = ("eager", "traced", "traced+opt")


@torch.no_grad()
def prepare(name: str, x: torch.Tensor) -> dict[tuple[str, str], torch.nn.Module]:
    torch.manual_seed(0)
    ours = build_model(PRESETS[name]).eval().deploy()
    theirs = create_timm_model(PRESETS[name]).eval()
    fuse_modules(theirs)  # timm's ConvNorm/NormLinear .fuse(), as the official speed test does
    out = {}
    for impl, model in (("timm", theirs), ("ours", ours)):
        out[(impl, "eager")] = model
        out[(impl, "traced")] = trace_for_inference(copy.deepcopy(model), x, optimize=False)
        out[(impl, "traced+opt")] = trace_for_inference(copy.deepcopy(model), x, optimize=True)
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=2, help="timed forward passes per variant per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="M0,M1,M2,M3,M4,M5")
    ap.add_argument("--out", type=Path, default=Path("results/model_speed_cpu.md"))
    return ap.parse_args()


@torch.no_grad()
def time_rounds(fns: dict[tuple, torch.nn.Module], x: torch.Tensor, rounds: int, iters: int) -> dict[tuple, list[float]]:
    """Seconds per forward pass of every variant, per round; the variants take turns in each round."""
    times: dict[tuple, list[float]] = {k: [] for k in fns}
    for f in fns.values():  # warm-up: oneDNN primitive creation, profiling executor runs
        for _ in range(3):
            f(x)
    for r in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                f(x)
            times[k].append((time.perf_counter() - t0) / iters)
        print(f"round {r + 1}/{rounds} done", flush=True)
    return times


def speed_record(n: str, times: dict[tuple, list[float]], batch: int) -> dict[str, Any]:
    """Images/s of every variant of model ``n`` and our speedups over timm (medians of per-round ratios)."""

    def ips(k: tuple) -> float:
        return batch / statistics.median(times[k])

    def speedup(var: str, ref_var: str) -> float:
        return statistics.median(t / o for t, o in zip(times[(n, "timm", ref_var)], times[(n, "ours", var)], strict=True))

    rec = {"model": n, **{f"{impl}_{var}": round(ips((n, impl, var)), 1) for impl in ("timm", "ours") for var in VARIANTS}}
    rec["speedup_traced"] = round(speedup("traced", "traced"), 3)
    rec["speedup_opt_vs_timm_traced"] = round(speedup("traced+opt", "traced"), 3)
    rec["speedup_opt_vs_timm_opt"] = round(speedup("traced+opt", "traced+opt"), 3)
    return rec


def report(args: argparse.Namespace, records: list[dict[str, Any]], setting: str) -> list[str]:
    """The markdown report, one line per item."""
    rows = [
        f"| {rec['model']} | {rec['timm_eager']:.0f} | {rec['ours_eager']:.0f} | {rec['timm_traced']:.0f} | {rec['ours_traced']:.0f} "
        f"| {rec['timm_traced+opt']:.0f} | {rec['ours_traced+opt']:.0f} | **{rec['speedup_traced']:.2f}x** "
        f"| {rec['speedup_opt_vs_timm_traced']:.2f}x | {rec['speedup_opt_vs_timm_opt']:.2f}x |"
        for rec in records
    ]
    return [
        "# Model speed on CPU: our deployment form vs timm (fused + traced)",
        "",
        f"Setting: {setting}. Throughput in images/s, median of {args.rounds} interleaved rounds x {args.iters} iterations.",
        "Speedups are medians of per-round ratios (ours / timm), so machine drift cancels.",
        "",
        "- *timm*: `timm.models.efficientvit_msra`, every ConvNorm/NormLinear fused (the official speed test's `replace_batchnorm`).",
        "- *eager* columns run under `torch.no_grad()`.",
        "- *ours*: `build_model(cfg).deploy()`: all BN folded, `x + dwconv(x)` folded into the conv, attention scale folded into the",
        "  Q conv, attention biases gathered once, NCHW window partition.",
        "- *traced*: `torch.jit.trace` (the paper's protocol, and the `trace` backend of `effvit-nas bench`); *traced+opt*: then",
        "  `torch.jit.freeze` + `optimize_for_inference`. Caveat: the +opt figures here were taken in a process that also runs",
        "  plain traced models; its speed depends on what ran before it in the process (seen in manual checks, not measured",
        "  by this script). That history dependence is why +opt is not used to measure.",
        "",
        "| model | timm eager | ours eager | timm traced | ours traced | timm traced+opt | ours traced+opt | **ours/timm traced (paper protocol)** | ours +opt / timm traced | ours/timm both +opt |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Command: `uv run python benchmarks/model_speed.py " + f"--rounds {args.rounds} --iters {args.iters} --out {args.out}`",
    ]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, 224, 224)
    names = args.models.split(",")
    fns = {(n, impl, var): m for n in names for (impl, var), m in prepare(n, x).items()}
    times = time_rounds(fns, x, args.rounds, args.iters)
    records = [speed_record(n, times, args.batch) for n in names]
    setting = f"batch {args.batch}, 224x224, fp32, {args.threads} thread(s), CPU backend, torch {torch.__version__}, {cpu_model()}"
    md = report(args, records, setting)
    write_report(args.out, "\n".join(md), {"setting": setting, "results": records})
    print("\n".join(md))


if __name__ == "__main__":
    main()
