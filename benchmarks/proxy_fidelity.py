"""How well does each proxy rank architectures? (results/proxy_fidelity.md)

Twelve architectures: M0-M5 and six sampled from the default search space (at most M5's MACs).
Every proxy is evaluated on the same offline synthetic data; the reference is the same
short-training recipe run 10x longer. Reported: Spearman and Kendall rank correlation of each
proxy with the reference, next to the #params and MACs baselines, each proxy's seconds per
candidate, and how each proxy orders M0-M5 compared with their ImageNet top-1.

    uv run python benchmarks/proxy_fidelity.py --steps 100 --ref-factor 10 --out results/proxy_fidelity.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS
from effvit_nas.arch.space import load_space
from effvit_nas.data import DataConfig, Dataset, load_data
from effvit_nas.model.cost import model_cost
from effvit_nas.proxy.registry import PROXIES, evaluate_proxy
from effvit_nas.proxy.short_training import ShortTrainSettings

IMAGENET_TOP1 = {"M0": 63.2, "M1": 68.4, "M2": 70.8, "M3": 73.4, "M4": 74.3, "M5": 77.1}


def architectures(n_sampled: int, seed: int):
    space = load_space()
    rng = np.random.default_rng(seed)
    limit = model_cost(PRESETS["M5"]).macs
    out = dict(PRESETS)
    while len(out) < 6 + n_sampled:
        c = space.sample(rng)
        if model_cost(c).macs <= limit:
            out[c.short_hash()] = c
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="steps of the train proxy")
    ap.add_argument("--ref-factor", type=int, default=10, help="reference = train proxy with this many times the steps")
    ap.add_argument("--sampled", type=int, default=6)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/proxy_fidelity.md"))
    return ap.parse_args()


def evaluate_all(archs: dict, data: Dataset, proxy_settings: ShortTrainSettings, ref_settings: ShortTrainSettings):
    """Every proxy and the reference on every architecture: (values, seconds), by proxy then name."""
    values: dict[str, dict[str, float]] = {p: {} for p in [*PROXIES, "reference"]}
    seconds: dict[str, list[float]] = {p: [] for p in values}
    t0 = time.time()
    for name, cfg in archs.items():
        for p in PROXIES:
            r = evaluate_proxy(p, cfg, data, proxy_settings)
            values[p][name] = r.value
            seconds[p].append(r.seconds)
        r = evaluate_proxy("train", cfg, data, ref_settings)
        values["reference"][name] = r.value
        seconds["reference"].append(r.seconds)
        print(f"{name}: ref {r.value:.3f} train {values['train'][name]:.3f} ({time.time() - t0:.0f} s)", flush=True)
    return values, seconds


def preset_order(values: dict[str, float]) -> str:
    """M0-M5, best first by ``values``."""
    return " > ".join(sorted(IMAGENET_TOP1, key=lambda n: -values[n]))


def imagenet_spearman(values: dict[str, float]) -> float:
    """Rank correlation of ``values`` of M0-M5 with their ImageNet top-1."""
    presets = list(IMAGENET_TOP1)
    return spearmanr([values[n] for n in presets], [IMAGENET_TOP1[n] for n in presets]).statistic


def fidelity_rows(values: dict[str, dict[str, float]], seconds: dict[str, list[float]], names: list[str]) -> list[str]:
    """One table row per proxy, best Spearman vs the reference first."""
    ref = [values["reference"][n] for n in names]
    rows = []
    for p in PROXIES:
        v = [values[p][n] for n in names]
        rho, tau = spearmanr(v, ref).statistic, kendalltau(v, ref).statistic
        rows.append((p, rho, tau, imagenet_spearman(values[p]), statistics.median(seconds[p]), preset_order(values[p])))
    rows.sort(key=lambda r: -r[1])
    return [f"| {p} | {rho:+.3f} | {tau:+.3f} | {m:+.3f} | {s:.2f} s | {order} |" for p, rho, tau, m, s, order in rows]


def report(args: argparse.Namespace, data: Dataset, archs: dict, values, seconds, proxy_settings: ShortTrainSettings) -> list[str]:
    """The markdown report, one line per item."""
    names = list(archs)
    acc_rows = [
        f"| {n} | {values['reference'][n] * 100:.1f} | {values['train'][n] * 100:.1f} | {model_cost(archs[n]).params / 1e6:.2f} | {model_cost(archs[n]).macs / 1e6:.0f} |"
        for n in names
    ]
    return [
        "# Proxy fidelity: how each proxy ranks 12 architectures against a 10x longer training",
        "",
        f"Data: offline synthetic ({data.num_classes} classes, {len(data.train_y)} train / {len(data.val_y)} held-out images, "
        f"{data.img_size} px), seed {args.seed}; {args.threads} CPU threads, torch {torch.__version__}.",
        f"Proxy `train`: {args.steps} steps (batch {proxy_settings.batch}, AdamW lr {proxy_settings.lr}, warm-up + cosine, label smoothing 0.1).",
        f"Reference: the same recipe for {args.steps * args.ref_factor} steps ({args.ref_factor}x). Architectures: M0-M5 and "
        f"{args.sampled} samples of search_spaces/efficientvit.yaml with at most M5's MACs.",
        "",
        "| proxy | Spearman vs reference | Kendall vs reference | Spearman of M0-M5 vs ImageNet top-1 | seconds / candidate | M0-M5 order (best first) |",
        "|---|---|---|---|---|---|",
        *fidelity_rows(values, seconds, names),
        f"| *reference itself* | | | {imagenet_spearman(values['reference']):+.3f} | {statistics.median(seconds['reference']):.1f} s | "
        + preset_order(values["reference"])
        + " |",
        "",
        "ImageNet order (paper): M5 > M4 > M3 > M2 > M1 > M0.",
        "",
        "| architecture | reference top-1 % | train-proxy top-1 % | params (M, 1000 cls) | MACs (M, 224 px) |",
        "|---|---|---|---|---|",
        *acc_rows,
        "",
        f"Command: `uv run python benchmarks/proxy_fidelity.py --steps {args.steps} --ref-factor {args.ref_factor} --out {args.out}`",
    ]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(DataConfig(img_size=args.img_size, seed=args.seed))
    archs = architectures(args.sampled, args.seed)
    proxy_settings = ShortTrainSettings(steps=args.steps, seed=args.seed)
    ref_settings = ShortTrainSettings(steps=args.steps * args.ref_factor, seed=args.seed)
    values, seconds = evaluate_all(archs, data, proxy_settings, ref_settings)
    md = report(args, data, archs, values, seconds, proxy_settings)
    write_report(args.out, "\n".join(md), {"values": values, "seconds": seconds, "configs": {n: c.to_dict() for n, c in archs.items()}})
    print("\n".join(md))


if __name__ == "__main__":
    main()
