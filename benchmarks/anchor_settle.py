"""Does settling each turn remove the bias of anchored batch-1 latency? (issue 47)

An anchored figure is a model's ratio to the anchor (M0), the two timed in alternating turns,
times the anchor's stored figure. The first inferences after the other model ran are slower
(0.2-1 ms: the incoming model's weights refill the caches), so with one timed iteration per turn
both models carry that cost and a fast model's ratio is pulled towards 1
(results/openvino_latency_check.md). Since 0.3 each turn starts with ``pair_settle_s`` (10 ms)
of untimed iterations. For each backend this times the same models three ways, each in a fresh
store (so the anchor is measured afresh, until its runs agree):

- ``alone``: ``--no-anchor``, each model timed by itself;
- ``settle 0``: anchored, no settling (the protocol before 0.3);
- ``settle 10 ms``: anchored, the default.

and reports each model's p50 and its anchored figure / alone figure. Run on a quiet core:

    uv run --extra openvino --extra executorch python benchmarks/anchor_settle.py \\
        --backends openvino,onnxruntime,executorch,trace --out results/anchor_settle_cpu
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import backends_arg, write_report
from effvit_nas.arch.config import ArchConfig, estimate_cost, preset
from effvit_nas.arch.space import load_space
from effvit_nas.measure.actor import measure_configs
from effvit_nas.measure.anchor import how_measured, measure_anchored
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore

MODES = {"alone": None, "settle 0": 0.0, "settle 10 ms": 0.01}


def models(img_size: int, seed: int) -> dict[str, ArchConfig]:
    """M0, M3 and the architecture of fewest MACs among 50 sampled from efficientvit64 (a model
    far faster than the anchor, where the bias showed most), all at ``img_size``."""
    space = load_space("efficientvit64")
    rng = np.random.default_rng(seed)
    small = min((space.sample(rng) for _ in range(50)), key=lambda c: estimate_cost(c)[0])
    out = {n: replace(preset(n), img_size=img_size, num_classes=small.num_classes) for n in ("M0", "M3")}
    out[small.short_hash()] = replace(small, img_size=img_size)
    return out


def one_mode(backend: str, settle: float | None, cfgs: dict[str, ArchConfig]) -> dict[str, Any]:
    """p50 (ms) of each model timed one way, in a fresh store."""
    base = BenchSettings.for_device("cpu", backend=backend, metric="latency")
    with tempfile.TemporaryDirectory() as tmp:
        store = MeasurementStore(f"sqlite:///{tmp}/store.db")
        t0 = time.perf_counter()
        if settle is None:
            ms = measure_configs(list(cfgs.values()), "cpu", base, store)
            anchor = None
        else:
            a, ms = measure_anchored(list(cfgs.values()), cfgs["M0"], "cpu", replace(base, pair_settle_s=settle), store)
            anchor = {"p50_ms": a.p50_ms, "how": how_measured(a)}
        seconds = time.perf_counter() - t0
    return {"p50_ms": {n: m.p50_ms for n, m in zip(cfgs, ms, strict=True)}, "anchor": anchor, "seconds": seconds}


def markdown(result: dict[str, Any], command: str) -> str:
    names = result["models"]
    lines = [
        "# Anchored batch-1 latency: settling each turn against none, against each model timed alone",
        "",
        f"`{command}`",
        "",
        f"{result['when']}; models at {result['img_size']} px, batch 1, 1 thread, fp32. p50 in ms; in brackets the "
        "figure / the same model's figure timed alone (1.00 = no bias).",
        "",
        "| backend | mode | anchor p50 (how) | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for backend, modes in result["backends"].items():
        alone = modes["alone"]["p50_ms"]
        for mode, r in modes.items():
            anchor = "-" if r["anchor"] is None else f"{r['anchor']['p50_ms']:.3f} ({r['anchor']['how']})"
            cells = [f"{r['p50_ms'][n]:.3f}" + ("" if mode == "alone" else f" ({r['p50_ms'][n] / alone[n]:.2f})") for n in names]
            lines.append(f"| {backend} | {mode} | {anchor} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="openvino,onnxruntime,executorch,trace", help="comma-separated CPU backends")
    ap.add_argument("--img-size", type=int, default=64, help="resolution of every model (px, default 64)")
    ap.add_argument("--seed", type=int, default=3, help="seed of the sampled small architecture (default 3)")
    ap.add_argument("--out", type=Path, default=Path("results/anchor_settle_cpu"))
    args = ap.parse_args()
    backends = backends_arg(ap, args.backends)
    cfgs = models(args.img_size, args.seed)
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "img_size": args.img_size}
    result.update(models=list(cfgs), configs={n: c.to_dict() for n, c in cfgs.items()}, backends={})
    for b in backends:
        result["backends"][b] = {mode: one_mode(b, settle, cfgs) for mode, settle in MODES.items()}
        print(b, {m: r["p50_ms"] for m, r in result["backends"][b].items()}, flush=True)
    command = "uv run --extra openvino --extra executorch python benchmarks/anchor_settle.py " + " ".join(sys.argv[1:])
    write_report(args.out.with_suffix(".md"), markdown(result, command), result)


if __name__ == "__main__":
    main()
