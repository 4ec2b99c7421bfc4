"""Where does the spread between repeated throughput measurements come from: the machine over
time, or the freshly built model (memory layout, trace) each measurement prepares?

Each round measures one preset three ways, interleaved so that the machine's drift over the
round reaches all three alike, with the default CPU protocol's windows (batch 16, 1 thread,
fp32, traced; 1.5 s warm-up, then up to 4 s of 0.25 s windows):

- ``held``: one model, built and traced once before the first round, timed again each round;
- ``fresh``: a model built and traced anew, timed once (what `bench` and the search do);
- ``fresh xK``: K models built anew, each timed for 1/K of the time; the figure is the median
  of all their windows (averaging over builds, as Stabilizer-style layout randomisation does).

If fresh builds caused the spread, ``held`` would repeat better than ``fresh``, and ``fresh xK``
better still; if the machine drifts, all three move together, so the ratio ``fresh / held``
within a round repeats far better than either.

    uv run python benchmarks/throughput_build_spread.py --model M2 --rounds 10 --out results/throughput_build_spread.md

Claim reproduced (docs/results/measurement-noise.md): the spread is not the model's build.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import on_device, prepare, time_forward

WAYS = ("held", "fresh", "fresh xK")


def _timed(measure: Callable[[], float]) -> tuple[float, float]:
    """``measure()``'s img/s and the seconds it took."""
    t0 = time.perf_counter()
    return measure(), time.perf_counter() - t0


def one_round(model: str, held: Callable[[], Any], settings: BenchSettings, builds: int, clocks: tuple) -> dict[str, tuple[float, float]]:
    """(img/s, seconds) of each way, measured in the order of ``WAYS``; ``held``: the forward pass built
    once, ``clocks``: :func:`on_device`'s (sync, iteration timer, CPU-time clock)."""
    sync, timer, cpu = clocks
    config, batch = PRESETS[model], settings.batch
    part = replace(settings, warmup_s=settings.warmup_s / builds, measure_s=settings.measure_s / builds, ci_target=0)

    def windows(forward: Callable[[], Any], s: BenchSettings) -> list[float]:
        return list(time_forward(forward, s, sync, timer, cpu).medians())

    def fresh(s: BenchSettings) -> list[float]:
        return windows(prepare(config, settings, "cpu", batch), s)

    def figure(medians: list[float]) -> float:
        return batch / float(np.median(medians))

    return {
        "held": _timed(lambda: figure(windows(held, settings))),
        "fresh": _timed(lambda: figure(fresh(settings))),
        "fresh xK": _timed(lambda: figure([t for _ in range(builds) for t in fresh(part)])),
    }


def cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values)


def report(model: str, rows: list[dict], builds: int, fp: dict, command: str) -> str:
    lines = [
        f"# Spread of repeated throughput measurements: machine drift or fresh builds? ({model}, CPU)",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. {len(rows)} rounds; each measures {model} three ways, interleaved,"
        f" with the default CPU protocol's windows (K = {builds}). See the benchmark's docstring.",
        "",
        "| way | median img/s | CV over rounds | range | seconds per measurement |",
        "|---|---|---|---|---|",
    ]
    for way in WAYS:
        v, s = [r[way][0] for r in rows], [r[way][1] for r in rows]
        name = way.replace("K", str(builds))
        lines.append(f"| {name} | {statistics.median(v):.0f} | {cv(v):.2%} | {min(v):.0f}-{max(v):.0f} | {statistics.median(s):.1f} |")
    ratio = [r["fresh"][0] / r["held"][0] for r in rows]
    ratio_k = [r["fresh xK"][0] / r["held"][0] for r in rows]
    lines += [
        "",
        f"Within a round: fresh / held, CV over rounds {cv(ratio):.2%} (median {statistics.median(ratio):.3f});"
        f" fresh x{builds} / held, CV {cv(ratio_k):.2%} (median {statistics.median(ratio_k):.3f}).",
        "",
        "Per round (img/s): " + "; ".join(" / ".join(f"{r[w][0]:.0f}" for w in WAYS) for r in rows),
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="M2", choices=sorted(PRESETS))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--builds", type=int, default=4, help="K: builds sharing one measurement's time (default 4)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    settings = BenchSettings(batch=16)
    fp = fingerprint("cpu")
    rows = []
    with on_device(settings, "cpu") as clocks:
        held = prepare(PRESETS[a.model], settings, "cpu", settings.batch)
        for i in range(a.rounds):
            rows.append(one_round(a.model, held, settings, a.builds, clocks))
            print(f"round {i}: " + "  ".join(f"{w} {rows[-1][w][0]:.0f}" for w in WAYS), flush=True)
    command = f"uv run python benchmarks/throughput_build_spread.py --model {a.model} --rounds {a.rounds} --builds {a.builds}"
    text = report(a.model, rows, a.builds, fp, command + (f" --out {a.out}" if a.out else ""))
    print(text)
    if a.out:
        write_report(a.out, text, {"device": fp, "command": command, "rows": rows})


if __name__ == "__main__":
    main()
