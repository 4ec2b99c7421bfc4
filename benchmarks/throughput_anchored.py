"""Do anchored figures (`bench --anchor`) repeat where single figures do not?

Single figures at the presets' own resolutions repeated with CV 2.6-5.2 % on the quiet 2-core VM,
because the whole machine slowed for minutes (results/throughput_precision_cpu.md). An anchored
figure is the model's ratio to an anchor preset, timed alternately, times the anchor's figure
stored once (:mod:`effvit_nas.measure.anchor`). This runs the path `bench` runs (the device's
Ray actor, a measurement store in a temporary SQLite file): the anchor is measured once (median
of 3) at the start, then each round measures ``--models`` as plain single figures and as
anchored figures, both re-timed (``fresh``), the two kinds' order alternating between rounds;
quiet, and with a second process spinning on one core (the other core of this 2-core VM).
Reports per condition and model: CV over rounds of both kinds, medians, seconds per
measurement, and in how many rounds the models came out in the paper's order (M0 fastest).

    uv run python benchmarks/throughput_anchored.py --repeats 10

Claim reproduced (docs/results/measurement-noise.md): anchored figures against single figures.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

from benchmarks._report import write_report

sys.path.insert(0, str(Path(__file__).parent))
from throughput_precision import condition, spread  # a sibling script, not a package

from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.actor import get_worker, measure_configs
from effvit_nas.measure.anchor import how_measured, measure_anchored
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore

KINDS = ("single", "anchored")


def rounds(repeats: int, models: tuple[str, ...], anchor: str, settings: BenchSettings, store: MeasurementStore, worker) -> list[dict]:
    """Per round and kind, each model's figure (img/s) and the seconds it took, measured by ``worker`` (the device actor)."""
    cfgs = [PRESETS[m] for m in models]
    out = []
    for r in range(repeats):
        row: dict[str, dict] = {}
        for kind in KINDS if r % 2 == 0 else reversed(KINDS):
            if kind == "single":
                ms = measure_configs(cfgs, "cpu", settings, store, fresh=True, worker=worker)
            else:
                ms = measure_anchored(cfgs, PRESETS[anchor], "cpu", settings, store, fresh=True, worker=worker)[1]
            row[kind] = {
                n: {"throughput": m.throughput, "seconds": m.seconds, "disturbed": m.disturbed} for n, m in zip(models, ms, strict=True)
            }
        print(
            f"round {r}: " + "  ".join(f"{k} " + " ".join(f"{n} {row[k][n]['throughput']:.1f}" for n in models) for k in KINDS),
            flush=True,
        )
        out.append(row)
    return out


def summary(data: list[dict], models: tuple[str, ...]) -> dict:
    out: dict = {}
    for kind in KINDS:
        per = {}
        for n in models:
            per[n] = {
                **spread([r[kind][n]["throughput"] for r in data], [r[kind][n]["seconds"] for r in data]),
                "disturbed": sum(r[kind][n]["disturbed"] for r in data),
            }
        order = [all(r[kind][a]["throughput"] > r[kind][b]["throughput"] for a, b in itertools.pairwise(models)) for r in data]
        out[kind] = {"models": per, "paper_order": order}
    return out


def report(args, anchor_m, results: dict, models: tuple[str, ...], s: BenchSettings) -> list[str]:
    fp = anchor_m.device
    md = [
        "# Anchored figures against single figures (CPU, default protocol)",
        "",
        f"Device: {fp['name']} ({fp['logical_cores']} logical cores), torch {fp['torch']}. Protocol: batch {s.batch}, {s.precision}, "
        f"{s.threads} thread, backend {s.backend}, malloc {s.malloc}; presets at their own resolutions.",
        f"- single: `effvit-nas bench MODEL --fresh` (warm-up {s.warmup_s:g} s, {s.window_s:g} s windows until ±{100 * s.ci_target:g} % "
        f"or {s.measure_s:g} s).",
        f"- anchored: `effvit-nas bench MODEL --anchor {args.anchor} --fresh`: the model's ratio to {args.anchor} (timed alternately, "
        f"one iteration each, up to {s.measure_s:g} s) x {args.anchor}'s stored figure, {anchor_m.throughput:.1f} img/s "
        f"({how_measured(anchor_m)}, measured once at the start).",
        f"{args.repeats} rounds per condition, both kinds in each round, their order alternating. busy: a second Python process "
        "spins on one core throughout (this VM has 2).",
        "",
        "| condition | model | kind | median img/s | CV over rounds | range | seconds per measurement | disturbed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cond, summ in results.items():
        for n in models:
            for kind in KINDS:
                m = summ[kind]["models"][n]
                md.append(
                    f"| {cond} | {n} | {kind} | {m['median']:,.1f} | {100 * m['cv']:.2f} % | {min(m['throughput']):,.1f}-"
                    f"{max(m['throughput']):,.1f} | {m['seconds_median']:.1f} s (max {m['seconds_max']:.1f}) | {m['disturbed']} |"
                )
    md.append("")
    for cond, summ in results.items():
        md.append(
            f"- {cond}: {', '.join(models)} in the paper's order in "
            + " and ".join(f"{sum(summ[k]['paper_order'])} of {len(summ[k]['paper_order'])} rounds as {k} figures" for k in KINDS)
            + "."
        )
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--models", default="M0,M2,M5", help="Presets, fastest first.")
    ap.add_argument("--anchor", default="M1", help="The anchor preset (default M1: between the models, and not one of them).")
    ap.add_argument("--out", type=Path, default=Path("results/throughput_anchored_cpu.md"))
    args = ap.parse_args()
    models = tuple(args.models.split(","))
    if args.anchor in models:
        ap.error("--anchor must not be one of --models: its anchored figure would be its stored one")
    s = BenchSettings.for_device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        store = MeasurementStore(f"sqlite:///{tmp}/anchored.db")
        worker = get_worker("cpu", s)  # one actor for the whole run, as one `bench` command has
        anchor_m = measure_anchored([], PRESETS[args.anchor], "cpu", s, store, worker=worker)[0]
        print(f"anchor {args.anchor}: {anchor_m.throughput:.1f} img/s ({anchor_m.note})", flush=True)
        results = {}
        for cond in args.conditions.split(","):
            with condition(cond):
                results[cond] = summary(rounds(args.repeats, models, args.anchor, s, store, worker), models)
    md = report(args, anchor_m, results, models, s)
    flags = (f" --models {args.models}" if args.models != "M0,M2,M5" else "") + (f" --anchor {args.anchor}" if args.anchor != "M1" else "")
    md += ["", f"Command: `uv run python benchmarks/throughput_anchored.py --repeats {args.repeats}{flags} --out {args.out}`"]
    payload = {"device": anchor_m.device, "settings": s.__dict__, "anchor": anchor_m.to_dict(), "results": results}
    write_report(args.out, "\n".join(md), payload)
    print("\n".join(md))


if __name__ == "__main__":
    main()
