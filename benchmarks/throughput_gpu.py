"""M0-M5 throughput on a CUDA GPU with the paper's protocol, as `effvit-nas bench --device cuda` runs it.

Verifies the GPU path on a lent machine (our CI has no GPU) and records what it measured: each
round measures every preset with the tool's own `measure` (224 px, batch 2048, fp16 autocast,
traced, BN folded, cudnn benchmark, each iteration timed by CUDA events), then again with the
eager backend, then timm's model of the same preset fused and run eager the same way, then M0
once more timed by the host clock after a synchronize, to compare the two clocks on one prepared
model. Figures are medians over rounds; the spread across rounds is the repeatability.

Runs without Ray (its wheel is too large to carry to the lent machine): `measure` is the function
the device actor calls.

    python benchmarks/throughput_gpu.py --rounds 3 --out results/throughput_gpu.md

Claim reproduced: M0-M5 on a GPU with the paper's protocol (docs/results/model-speed.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from throughput_backends import PAPER_V100

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.devices import fingerprint
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import cuda_event_timer, measure, measure_ratio, prepare, summarize, time_forward, wall_timer
from effvit_nas.model.efficientvit import fuse_modules
from effvit_nas.model.timm_compat import create_timm_model

DEVICE = "cuda:0"


def timm_reference(name: str, s: BenchSettings) -> float:
    """timm's model of preset ``name``, fused, eager under fp16 autocast, CUDA-event timed.

    Eager, as timm users run it; compared with our eager backend.
    """
    torch.manual_seed(0)
    model = create_timm_model(PRESETS[name]).eval()
    with torch.no_grad():
        fuse_modules(model)  # before .to(): timm's fuse() builds each fused layer on the CPU
    model = model.to(DEVICE)
    x = torch.randn(s.batch, 3, 224, 224, device=DEVICE)

    def forward():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            return model(x)

    return summarize(time_forward(forward, s, torch.cuda.synchronize, cuda_event_timer()), s.batch)["throughput"]


def clocks(s: BenchSettings) -> dict[str, float]:
    """M0 prepared once, timed by CUDA events and by the host clock, one after the other."""
    forward = prepare(PRESETS["M0"], s, DEVICE, s.batch)
    sync = torch.cuda.synchronize
    return {
        "events": summarize(time_forward(forward, s, sync, cuda_event_timer()), s.batch)["throughput"],
        "host": summarize(time_forward(forward, s, sync, wall_timer(sync)), s.batch)["throughput"],
    }


def run(names: list[str], rounds: int) -> dict:
    s = BenchSettings.for_device("cuda")
    fp = fingerprint(DEVICE)
    rec: dict = {
        "device": fp,
        "settings": s.__dict__,
        "ours": {},
        "eager": {},
        "timm": {},
        "cv": {},
        "seconds": {},
        "clocks": [],
        "ratio_m2_m0": [],
        "windows": {},
    }
    t0 = time.time()
    for r in range(rounds):
        for n in names:
            m = measure(PRESETS[n], s, DEVICE, fp)
            assert m.batch == s.batch, m.note  # a halved batch would not be the paper's protocol
            rec["ours"].setdefault(n, []).append(m.throughput)
            rec["cv"].setdefault(n, []).append(m.cv)
            rec["seconds"].setdefault(n, []).append(m.seconds)
            rec["windows"].setdefault(n, []).append([m.windows, m.disturbed])
            rec["eager"].setdefault(n, []).append(measure(PRESETS[n], replace(s, backend="eager"), DEVICE, fp).throughput)
            rec["timm"].setdefault(n, []).append(timm_reference(n, s))
        rec["clocks"].append(clocks(s))
        q = measure_ratio(PRESETS["M2"], PRESETS["M0"], s, DEVICE, fp)  # ratio mode, as `bench M2 --relative-to M0`
        rec["ratio_m2_m0"].append({"ratio": q.ratio, "ci": [q.ci_low, q.ci_high], "pairs": q.pairs, "seconds": q.seconds})
        print(f"round {r + 1}/{rounds} done ({time.time() - t0:.0f} s)", flush=True)
    return rec


def spread(v: list[float]) -> str:
    return f"{statistics.median(v):,.0f} [{min(v):,.0f}-{max(v):,.0f}]"


def report(rec: dict, names: list[str], rounds: int, out: Path) -> list[str]:
    fp, s = rec["device"], rec["settings"]
    med = {n: statistics.median(rec["ours"][n]) for n in names}
    rows = [
        f"| {n} | {spread(rec['ours'][n])} | {spread(rec['eager'][n])} | {spread(rec['timm'][n])}"
        f" | {statistics.median(rec['eager'][n]) / statistics.median(rec['timm'][n]):.2f}x"
        f" | {100 * statistics.pstdev(rec['ours'][n]) / statistics.mean(rec['ours'][n]):.1f} %"
        f" | {100 * statistics.median(rec['cv'][n]):.1f} % | {statistics.median(rec['seconds'][n]):.1f} | {PAPER_V100[n]:,}"
        f" | {med[n] / PAPER_V100[n]:.2f}x |"
        for n in names
    ]
    order = sorted(names, key=lambda n: -med[n])
    paper = sorted(names, key=lambda n: -PAPER_V100[n])
    per_round = [sorted(names, key=lambda n, r=r: -rec["ours"][n][r]) for r in range(rounds)]
    ratio = [c["events"] / c["host"] for c in rec["clocks"]]
    return [
        "# M0-M5 throughput on a GPU, the paper's protocol (`effvit-nas bench --device cuda`)",
        "",
        f"Device: {fp.get('name')}, torch {fp.get('torch')}, CUDA {fp.get('cuda')}, fingerprint `{fp.get('id')}`.",
        f"Protocol: batch {s['batch']}, 224x224, {s['precision']} autocast, backend {s['backend']}, BN folded, cudnn benchmark,"
        f" warm-up {s['warmup_s']:g} s, then {s.get('window_s', 0):g} s windows until the 95 % interval is within ±{100 * s.get('ci_target', 0):g} % or"
        f" {s['measure_s']:g} s (each iteration timed by CUDA events); {rounds} rounds, models interleaved.",
        "Images/s: median over rounds [min-max]. 'across rounds' = CV of the per-round medians (repeatability);"
        " 'within' = median CV of iteration times inside one measurement.",
        "",
        "| model | ours, trace (img/s) | ours, eager | timm fused, eager | eager ours/timm | CV across rounds | CV within"
        " | s per measurement | paper V100 | vs V100 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Order, fastest first: {' > '.join(order)} (paper: {' > '.join(paper)};"
        f" {'same' if order == paper else 'differs'}); per round: {sum(o == paper for o in per_round)} of {rounds} in the paper's order.",
        "",
        f"Clocks on one prepared M0: CUDA-event / host-clock throughput = {', '.join(f'{x:.3f}' for x in ratio)} per round.",
        "",
        "Windows per measurement (disturbed), ours trace: "
        + "; ".join(f"{n} " + ", ".join(f"{w} ({d})" for w, d in rec["windows"][n]) for n in names)
        + ".",
        "",
        "Ratio mode, M2 relative to M0 in alternating windows, per round: "
        + ", ".join(
            f"{q['ratio']:.3f} [{q['ci'][0]:.3f}-{q['ci'][1]:.3f}] ({q['pairs']} pairs, {q['seconds']:.1f} s)" for q in rec["ratio_m2_m0"]
        )
        + f"; separate figures' M2/M0 per round: {', '.join(f'{a / b:.3f}' for a, b in zip(rec['ours']['M2'], rec['ours']['M0'], strict=True))}.",
        "",
        f"Command: `python benchmarks/throughput_gpu.py --rounds {rounds} --out {out}`",
    ]


def require_cuda() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")


def save(out: Path, md: list[str], rec: dict) -> None:
    """The report as ``out`` (markdown) and its record beside it (.json); the report printed."""
    write_report(out, "\n".join(md), rec)
    print("\n".join(md))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default=",".join(PRESETS))
    ap.add_argument("--out", type=Path, default=Path("results/throughput_gpu.md"))
    args = ap.parse_args()
    require_cuda()
    names = args.models.split(",")
    rec = run(names, args.rounds)
    save(args.out, report(rec, names, args.rounds, args.out), rec)


if __name__ == "__main__":
    main()
