"""What does the supernet proxy lose when it looks at fewer images? (results/supernet_proxy_cost.md)

The supernet proxy (`--proxy supernet:DIR`) recalibrates a candidate's BatchNorm on 512 training
images and takes top-1 on the held-out images (1,000 in the fidelity studies). On the space study
of results/supernet_fashion.md that costs 1.58 s per candidate, 0.24x train@50's 6.56 s: its
forward passes over 1,512 images at up to 137 M MACs cost about what 50 small training steps do.
Issue #15's goal asks for <= 1/10 of the short-training proxy's cost. This benchmark scores every
architecture of both fidelity studies with the lr 2e-3 supernet (results/supernet/
efficientvit64-fashion-lr2e-3) at fewer calibration and held-out images, and reports each
setting's seconds per candidate (median, this process, nothing else running) and Kendall /
Spearman against the stored references: the price of a cheaper proxy in ranking quality.

The full setting (512, 100 per class) must give the scores the fidelity study stored for the same
weights: the first table's last column checks it. The grid was fixed before the run.

    uv run python benchmarks/supernet_proxy_cost.py
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._report import write_report

sys.path.insert(0, str(Path(__file__).parent))
from proxy_fidelity_fashion import _ci  # a sibling script, not a package
from supernet_fashion import STUDIES, SUPERNETS, report_of

from effvit_nas.arch.config import ArchConfig
from effvit_nas.data import DataConfig, Dataset, load_data
from effvit_nas.fidelity.ranking import agreement
from effvit_nas.proxy.registry import CALIBRATION_IMAGES
from effvit_nas.supernet.scoring import load_supernet, subnet_top1

NET = SUPERNETS[1]  # the lr 2e-3 supernet, the one the headline search used
# the fidelity studies' proxy data (benchmarks/proxy_fidelity_fashion.py COMMON)
DATA = DataConfig(source="fashion-mnist", img_size=64, train_per_class=100, val_per_class=100)
CALIBRATION = (512, 128, 32)  # BN recalibration images
VAL_PER_CLASS = (100, 30, 10)  # held-out images per class (10 classes)


def held_out(data: Dataset, per_class: int) -> Dataset:
    """``data`` with only the first ``per_class`` held-out images of each class."""
    keep = torch.cat([torch.nonzero(data.val_y == c).flatten()[:per_class] for c in range(data.num_classes)]).sort().values
    return replace(data, val_x=data.val_x[keep], val_y=data.val_y[keep])


def score(study: dict, data: Dataset, calibration: int) -> tuple[list[float], list[float]]:
    """Each complete architecture's supernet top-1 and the seconds it took."""
    net, _ = load_supernet(NET.folder)
    scores, seconds = [], []
    for a in (a for a in study["per_arch"] if a["complete"]):
        t0 = time.perf_counter()
        scores.append(subnet_top1(net, ArchConfig.from_dict(a["config"]), data, calibration, seed=0))
        seconds.append(time.perf_counter() - t0)
    return scores, seconds


def main() -> None:
    torch.manual_seed(0)
    full = load_data(DATA)
    reports = {s: report_of(s) for s in STUDIES}
    rows: dict[str, list[dict]] = {s: [] for s in STUDIES}
    for name, rep in reports.items():
        archs = [a for a in rep["per_arch"] if a["complete"]]
        ref = [statistics.mean(a["reference"]) for a in archs]
        stored = [a["proxies"].get(NET.proxy) for a in archs]
        for per_class in VAL_PER_CLASS:
            data = held_out(full, per_class)
            for calibration in CALIBRATION:
                scores, seconds = score(rep, data, calibration)
                a = agreement(scores, ref)
                same = None
                if (calibration, per_class) == (CALIBRATION_IMAGES, DATA.val_per_class):
                    same = sum(abs(x - y) < 1e-9 for x, y in zip(scores, stored, strict=True))
                row = {"calibration": calibration, "val_per_class": per_class, "kendall": a.kendall, "kendall_ci": a.kendall_ci}
                row |= {"spearman": a.spearman, "seconds": statistics.median(seconds), "max_seconds": max(seconds)}
                row |= {"scores": scores, "same_as_stored": same}
                rows[name].append(row)
                print(name, {k: v for k, v in row.items() if k != "scores"}, flush=True)
    write_report("results/supernet_proxy_cost.md", markdown(reports, rows), {"threads": torch.get_num_threads(), "rows": rows})


def markdown(reports: dict[str, dict], rows: dict[str, list[dict]]) -> str:
    lines = [
        "# The supernet proxy at fewer images: cost against ranking quality",
        "",
        f"Supernet `{NET.folder}` ({NET.label}), every architecture of both fidelity studies, Kendall / Spearman against "
        f"their references (results/supernet_fashion.md). Seconds per candidate: median over the architectures, one process, "
        f"{torch.get_num_threads()} torch threads, nothing else running. train@50's seconds are the fidelity store's.",
        "",
    ]
    for name, rep in reports.items():
        t50 = next(r for r in rep["rows"] if r["proxy"] == "train@50")
        lines += [
            f"## {name} study ({rep['complete']} architectures; train@50: Kendall {t50['agreement']['kendall']:+.2f}, "
            f"{t50['seconds']:.2f} s per candidate)",
            "",
            "| calibration images | held-out images | Kendall τ [95 % CI] | Spearman ρ | s / candidate (median, max) | x train@50's s | "
            "scores equal to the stored ones |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows[name]:
            same = "-" if r["same_as_stored"] is None else f"{r['same_as_stored']} of {len(r['scores'])}"
            lines.append(
                f"| {r['calibration']} | {10 * r['val_per_class']:,} | {_ci(r['kendall'], r['kendall_ci'])} | {r['spearman']:+.2f} | "
                f"{r['seconds']:.2f}, {r['max_seconds']:.2f} | {r['seconds'] / t50['seconds']:.3f} | {same} |"
            )
        lines.append("")
    lines += ["Command: `uv run python benchmarks/supernet_proxy_cost.py`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
