"""Does the weight-sharing supernet rank candidates, and does fine-tuning from it pay?
(results/supernet_fashion.md)

On Fashion-MNIST at 64 px, over search_spaces/efficientvit64.yaml, with the architectures and
references of the fidelity studies (benchmarks/proxy_fidelity_fashion.py,
results/fidelity_fashion.db):

1. one supernet, trained once with the sandwich rule and in-place distillation on the
   reference's 10,000 training images (`effvit-nas supernet train`);
2. the proxy `supernet:DIR` (inherited weights, BatchNorm recalibrated, top-1 on the held-out
   images) scored on every architecture of both fidelity studies through `effvit-nas fidelity
   --proxies`, so its Kendall / Spearman against the references and its seconds per candidate
   sit next to the other proxies';
3. fine-tuning: for the first --finetune architectures of the band study, `effvit-nas
   train` from scratch and `train --init-from DIR` with one recipe, and the first epoch at which
   the fine-tuned model reaches the from-scratch model's final top-1.

Every step resumes or skips what is stored (the supernet's and each training's folder, the
fidelity study). The supernet's weights (about 300 MB) and checkpoints are not committed.

Status (2026-12-01): written, NOT run yet. The supernet's training is hours on these 2 cores
(its largest subnet has 75 M parameters: one epoch over 1,000 images took 257 s with another
job on the cores), so it waits for a long session or a GPU.

    uv run python benchmarks/supernet_fashion.py                 # run (resumes), then report
    uv run python benchmarks/supernet_fashion.py --report-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

STUDIES = ("band", "space")
SUPERNET = Path("results/supernet/efficientvit64-fashion")
FINETUNE_DIR = Path("results/supernet/finetune")
DATA = ["--data", "fashion-mnist", "--img-size", "64", "--train-per-class", "1000"]
# the reference's regularisation (flips and padded crops, nothing else): see searched_vs_handdesigned.py
RECIPE = ["auto_augment=", "reprob=0", "mixup=0", "cutmix=0", "repeated_aug=1", "ema_decay=0", "color_jitter=0", "crop_pad=4"]
SETS = [a for kv in RECIPE for a in ("--set", kv)]


def run(cmd: list[str]) -> None:
    print("==", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        sys.exit(rc)


def train_supernet(epochs: int) -> None:
    if (SUPERNET / "supernet.json").exists():
        return
    resume = ["--resume"] if (SUPERNET / "checkpoints").exists() else []
    run(["effvit-nas", "supernet", "train", "--space", "efficientvit64", *DATA, "--val-per-class", "100",
         "--epochs", str(epochs), "--batch", "64", "--out", str(SUPERNET), *SETS, *resume, "--quiet"])  # fmt: skip


def proxy() -> str:
    return f"supernet:{SUPERNET.resolve()}"


def fidelity_command(study: str, *extra: str) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from proxy_fidelity_fashion import command

    return command(study, *extra)


def report_of(study: str) -> dict | None:
    proxies = ["--proxies", f"params,macs,naswot,synflow,gradnorm,dss,train@50,train@200,{proxy()}"]
    r = subprocess.run(fidelity_command(study, *proxies, "--report-only", "--json"), capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def finetune(report: dict, archs: int, epochs: int, train: bool) -> list[dict]:
    """From scratch and from the supernet, per architecture: each run's per-epoch top-1 (with
    ``train`` False only what is stored)."""
    out = []
    for arch in [a for a in report["per_arch"] if a["complete"]][:archs]:
        folder = FINETUNE_DIR / arch["hash"]
        runs = {}
        for name, extra in (("scratch", []), ("inherited", ["--init-from", str(SUPERNET)])):
            dest = folder / name
            if train and not (dest / "train.json").exists():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "config.json").write_text(json.dumps(arch["config"]))
                resume = ["--resume"] if dest.exists() else []
                run(["effvit-nas", "train", str(folder / "config.json"), *DATA, "--epochs", str(epochs), "--batch", "64",
                     "--out", str(dest), *SETS, *extra, *resume, "--quiet"])  # fmt: skip
            if (dest / "train.json").exists():
                runs[name] = [h["top1"] for h in json.loads((dest / "train.json").read_text())["history"]]
        if len(runs) == 2:
            out.append({"hash": arch["hash"], **runs})
    return out


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


def markdown(reports: dict[str, dict], tuned: list[dict], supernet: dict | None) -> str:
    lines = ["# The supernet on Fashion-MNIST at 64 px", ""]
    if supernet:
        lines += [
            f"Supernet: {supernet['epochs']} epochs over 10,000 training images, batch 64, sandwich rule (largest, smallest, "
            f"{supernet['settings']['random_subnets']} random per update), in-place distillation {supernet['settings']['distill']}; "
            f"one-time cost {supernet['seconds'] / 60:.0f} min on this 2-core CPU. Held-out top-1 after BN recalibration: "
            f"largest {100 * supernet['top1_largest']:.1f} %, smallest {100 * supernet['top1_smallest']:.1f} %.",
            "",
        ]
    for name, rep in reports.items():
        lines += [f"## {name} study `{rep['study']}`: {rep['complete']} of {rep['archs']} architectures complete", ""]
        lines += ["| proxy | Kendall τ [95 % CI] | Spearman ρ [95 % CI] | s / candidate |", "|---|---|---|---|"]
        for row in rep["rows"]:
            a = row["agreement"]
            cells = f"{a['kendall']:+.2f} [{a['kendall_ci'][0]:+.2f}, {a['kendall_ci'][1]:+.2f}] | " if a else "- | "
            cells += f"{a['spearman']:+.2f} [{a['spearman_ci'][0]:+.2f}, {a['spearman_ci'][1]:+.2f}]" if a else "-"
            seconds = f"{row['seconds']:.2f}" if row["seconds"] is not None else "-"
            lines.append(
                f"| {row['proxy'].split('/')[-1] if row['proxy'].startswith('supernet') else row['proxy']} | {cells} | {seconds} |"
            )
        if rep.get("ceiling"):
            c = rep["ceiling"]
            lines.append(
                f"| *reference seed 0 vs 1 (ceiling)* | {c['kendall']:+.2f} [{c['kendall_ci'][0]:+.2f}, {c['kendall_ci'][1]:+.2f}] | | |"
            )
        lines.append("")
    if tuned:
        lines += [
            "## Fine-tuning from inherited weights",
            "",
            "| architecture | from scratch (top-1 % per epoch) | inherited | epochs to reach scratch's final |",
            "|---|---|---|---|",
        ]
        for t in tuned:
            reach = epochs_to_reach(t["inherited"], t["scratch"][-1])
            fmt = ", ".join
            lines.append(
                f"| {t['hash']} | {fmt(f'{100 * v:.1f}' for v in t['scratch'])} | {fmt(f'{100 * v:.1f}' for v in t['inherited'])} | "
                f"{reach if reach is not None else 'not reached'} of {len(t['scratch'])} |"
            )
        lines.append("")
    lines += ["Command: `uv run python benchmarks/supernet_fashion.py` (resumes; `--report-only` rebuilds this file).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10, help="supernet epochs")
    ap.add_argument("--finetune", type=int, default=2, help="architectures fine-tuned and trained from scratch")
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        train_supernet(args.epochs)
        for study in STUDIES:
            run(fidelity_command(study, "--proxies", proxy()))
    reports = {s: r for s in STUDIES if (r := report_of(s)) is not None}
    tuned = []
    if "band" in reports and (SUPERNET / "supernet.json").exists():
        tuned = finetune(reports["band"], args.finetune, args.finetune_epochs, train=not args.report_only)
    supernet = json.loads((SUPERNET / "supernet.json").read_text()) if (SUPERNET / "supernet.json").exists() else None
    text = markdown(reports, tuned, supernet)
    Path("results/supernet_fashion.md").write_text(text)
    Path("results/supernet_fashion.json").write_text(
        json.dumps({"reports": reports, "finetune": tuned, "supernet": supernet}, indent=1, default=str)
    )
    print(text)


if __name__ == "__main__":
    main()
