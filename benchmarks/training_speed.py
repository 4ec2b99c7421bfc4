"""Training-step speed on CPU: NCHW (contiguous) against channels_last memory format.

Why: every training path (the train proxy, the fidelity reference, `train`, `--train-top`) is
bound by forward + backward of small convolutions on 2 cores. This measures one AdamW step
(forward, cross-entropy, backward, update) of M0 and M2 at 64 px, 10 classes, for batch 64 and
256, both formats interleaved in one process: each round times every variant in turn, so drift
of the shared machine touches all alike; the speedup is the median over rounds of the
per-round ratio. Not a test: numbers are noisy.

    uv run python benchmarks/training_speed.py --rounds 5 --out results/training_speed_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import cpu_model
from effvit_nas.model.efficientvit import build_model

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def step_rate(name: str, batch: int, fmt: str, steps: int, img_size: int = 64) -> float:
    """Training images per second over ``steps`` AdamW steps after 3 warm-up steps."""
    torch.manual_seed(0)
    cfg = PRESETS[name].replace(img_size=img_size, num_classes=10)
    model = build_model(cfg).train().to(memory_format=FORMATS[fmt])
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, img_size, img_size).contiguous(memory_format=FORMATS[fmt])
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("results/training_speed_cpu.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [(m, b) for m in ("M0", "M2") for b in (64, 256)]
    rates: dict[str, list[float]] = {f"{m} b{b} {f}": [] for m, b in cases for f in FORMATS}
    for r in range(args.rounds):
        for m, b in cases:
            for f in FORMATS:
                rates[f"{m} b{b} {f}"].append(step_rate(m, b, f, args.steps))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    lines = [
        "# Training-step speed on CPU: NCHW vs channels_last",
        "",
        f"CPU: {cpu_model()}, {args.threads} torch threads; 64 px, 10 classes, AdamW step, fp32; "
        f"{args.rounds} interleaved rounds of {args.steps} steps.",
        "",
        "| model | batch | NCHW img/s median [min-max] | channels_last img/s median [min-max] | speedup median [min-max] |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for m, b in cases:
        a, c = rates[f"{m} b{b} nchw"], rates[f"{m} b{b} channels_last"]
        ratio = [y / x for x, y in zip(a, c, strict=True)]
        rows.append({"model": m, "batch": b, "nchw": a, "channels_last": c, "speedup": ratio})
        lines.append(
            f"| {m} | {b} | {statistics.median(a):.0f} [{min(a):.0f}-{max(a):.0f}] | {statistics.median(c):.0f} "
            f"[{min(c):.0f}-{max(c):.0f}] | {statistics.median(ratio):.2f}x [{min(ratio):.2f}-{max(ratio):.2f}] |"
        )
    lines += ["", f"Command: `uv run python benchmarks/training_speed.py --rounds {args.rounds} --steps {args.steps} --out {args.out}`", ""]
    write_report(args.out, "\n".join(lines), {"cpu": cpu_model(), "threads": args.threads, "rows": rows})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
