"""Every CUDA path of `effvit-nas bench` run once on a real GPU (our CI has none).

For M0 at 224 px: each backend the GPU supports (eager, trace, compile) in each precision (fp32,
fp16, bf16) through the tool's `measure` (CUDA-event timed, 1 s warm-up + 2 s); that onnxruntime
is refused on CUDA with the one-line error; and the out-of-memory path: a batch far beyond the
GPU's memory must come back halved, with the note saying so, and a figure.

Runs without Ray (its wheel is too large to carry to the lent machine).

    python benchmarks/gpu_paths.py --out results/gpu_paths.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.throughput_gpu import require_cuda, save
from effvit_nas.arch.config import PRESETS
from effvit_nas.errors import UserError
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import check_supported, measure

DEVICE = "cuda:0"
SHORT = {"warmup_s": 1.0, "measure_s": 2.0}


def combos(fp: dict) -> list[dict]:
    rows = []
    for backend in ("eager", "trace", "compile"):
        for precision in ("fp32", "fp16", "bf16"):
            s = BenchSettings.for_device("cuda", backend=backend, precision=precision, **SHORT)
            start = time.perf_counter()
            try:
                m = measure(PRESETS["M0"], s, DEVICE, fp)
                rows.append({"backend": backend, "precision": precision, "img_s": m.throughput, "batch": m.batch, "cv": m.cv})
            except Exception as e:  # a failing path is the finding this script exists for
                rows.append({"backend": backend, "precision": precision, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"})
            rows[-1]["seconds"] = time.perf_counter() - start
            print(rows[-1], flush=True)
    return rows


def refused_onnx() -> str:
    try:
        check_supported(BenchSettings.for_device("cuda", backend="onnxruntime", precision="fp32"), DEVICE)
    except UserError as e:
        return str(e)
    return "NOT refused"


def out_of_memory(fp: dict) -> dict:
    """A batch whose fp32 input alone (~160 GB) exceeds any single GPU's memory."""
    s = BenchSettings.for_device("cuda", batch=2**18, warmup_s=0.5, measure_s=1.0, min_iters=3)
    m = measure(PRESETS["M0"], s, DEVICE, fp)
    return {"asked": s.batch, "ran": m.batch, "note": m.note, "img_s": m.throughput}


def report(rec: dict, out: Path) -> list[str]:
    fp = rec["device"]
    rows = [
        f"| {r['backend']} | {r['precision']} | "
        + (f"{r['img_s']:,.0f} | {r['batch']} | {100 * r['cv']:.1f} %" if "img_s" in r else f"error: {r['error']} | | ")
        + f" | {r['seconds']:.1f} |"
        for r in rec["combos"]
    ]
    oom = rec["oom"]
    return [
        "# CUDA paths of `effvit-nas bench`, each run once on a real GPU",
        "",
        f"Device: {fp.get('name')}, torch {fp.get('torch')}, CUDA {fp.get('cuda')}; M0 at 224 px, batch {rec['batch']},"
        f" {SHORT['warmup_s']:g} s warm-up + {SHORT['measure_s']:g} s, one measurement each (a check that each path runs, not a benchmark).",
        "",
        "| backend | precision | img/s | batch | CV within | s (incl. build, compile) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"onnxruntime on CUDA: `{rec['onnx']}`",
        "",
        f'Out of memory: asked batch {oom["asked"]:,}, ran {oom["ran"]:,} ({oom["img_s"]:,.0f} img/s); note: "{oom["note"]}".',
        "",
        f"Command: `python benchmarks/gpu_paths.py --out {out}`",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/gpu_paths.md"))
    args = ap.parse_args()
    require_cuda()
    fp = fingerprint(DEVICE)
    rec = {"device": fp, "batch": BenchSettings.for_device("cuda").batch, "combos": combos(fp), "onnx": refused_onnx()}
    rec["oom"] = out_of_memory(fp)
    save(args.out, report(rec, args.out), rec)


if __name__ == "__main__":
    main()
