"""What does switching between two models cost the next inferences? (why ratio mode settles)

Two prepared copies of one model in one process (a fresh process per backend), run in
alternating turns of ``--turn`` iterations each for ``--seconds``; for each position in a turn,
the median iteration time of the first copy relative to the same copy run back to back (its
median over 400 iterations before). Position 1 is the first inference after the other copy ran.
Run pinned to a quiet core:

    taskset -c 0 uv run --extra openvino --extra executorch python benchmarks/switch_cost.py \\
        --backends openvino,onnxruntime,executorch,trace --out results/switch_cost_cpu
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks._report import backends_arg, write_report
from effvit_nas.arch.config import preset
from effvit_nas.measure.heap import fix_malloc
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import device_lock, prepare

POSITIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)


def _times(forward: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        forward()
        out.append(time.perf_counter() - t)
    return out


def one_backend(args: tuple) -> dict[str, Any]:
    """In a fresh process: the per-position medians of ``backend`` (relative to back to back)."""
    backend, model, img_size, batch, turn, seconds = args
    import torch  # lazy: a spawned process of its own

    torch.set_num_threads(1)
    fix_malloc()  # as the device actor times
    cfg = replace(preset(model), img_size=img_size)
    s = BenchSettings.for_device("cpu", batch=batch, backend=backend, metric="latency" if batch == 1 else "throughput")
    with device_lock("cpu"):  # no other effvit-nas timing beside this one
        return _positions(prepare(cfg, s, "cpu", batch), prepare(cfg, s, "cpu", batch), turn, seconds)


def _positions(a: Callable[[], Any], b: Callable[[], Any], turn: int, seconds: float) -> dict[str, Any]:
    _times(a, 100), _times(b, 100)
    alone = statistics.median(_times(a, 400))
    by_position: list[list[float]] = [[] for _ in range(turn)]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i, x in enumerate(_times(a, turn)):
            by_position[i].append(x)
        _times(b, turn)
    medians = [statistics.median(p) for p in by_position]
    elapsed = [sum(medians[: i + 1]) for i in range(turn)]
    return {
        "alone_ms": 1e3 * alone,
        "positions": {p: {"relative": medians[p - 1] / alone, "elapsed_ms": 1e3 * elapsed[p - 1]} for p in POSITIONS if p <= turn},
    }


def markdown(result: dict[str, Any], command: str) -> str:
    ps = [p for p in POSITIONS if p <= result["turn"]]
    lines = [
        "# The cost of switching models: each inference's time by its position in a turn",
        "",
        f"`{command}`",
        "",
        f"{result['when']}; {result['model']} at {result['img_size']} px, batch {result['batch']}, 1 thread, fp32; turns of "
        f"{result['turn']} iterations alternating with a second copy. Each cell: the median time at that position / the same "
        "copy back to back (in brackets: ms since the turn began).",
        "",
        "| backend | back to back (ms) | " + " | ".join(f"#{p}" for p in ps) + " |",
        "|---|---|" + "---|" * len(ps),
    ]
    for b, r in result["backends"].items():
        cells = [f"{r['positions'][str(p)]['relative']:.2f} ({r['positions'][str(p)]['elapsed_ms']:.0f})" for p in ps]
        lines.append(f"| {b} | {r['alone_ms']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="openvino,onnxruntime,executorch,trace", help="comma-separated CPU backends")
    ap.add_argument("--model", default="M0", help="preset (default M0)")
    ap.add_argument("--img-size", type=int, default=64, help="px (default 64)")
    ap.add_argument("--batch", type=int, default=1, help="1: latency protocol (default); more: throughput")
    ap.add_argument("--turn", type=int, default=48, help="iterations per turn (default 48)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of turns per backend (default 8)")
    ap.add_argument("--out", type=Path, default=Path("results/switch_cost_cpu"))
    args = ap.parse_args()
    backends = backends_arg(ap, args.backends)
    if args.turn < 1:
        ap.error("--turn must be >= 1")
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "backends": {}}
    result.update(model=args.model, img_size=args.img_size, batch=args.batch, turn=args.turn)
    ctx = multiprocessing.get_context("spawn")
    for b in backends:
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:  # a fresh process: no runtime carried over
            r = pool.submit(one_backend, (b, args.model, args.img_size, args.batch, args.turn, args.seconds)).result()
        result["backends"][b] = {**r, "positions": {str(p): v for p, v in r["positions"].items()}}
        print(b, f"{r['alone_ms']:.3f} ms", {p: round(v["relative"], 2) for p, v in r["positions"].items()}, flush=True)
    command = "uv run --extra openvino --extra executorch python benchmarks/switch_cost.py " + " ".join(sys.argv[1:])
    write_report(args.out.with_suffix(".md"), markdown(result, command), result)


if __name__ == "__main__":
    main()
