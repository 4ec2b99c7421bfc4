"""Which proxy ranks EfficientViTs on real images? (results/proxy_fidelity_fashion.md)

Two fidelity studies on Fashion-MNIST at 64 px, stored in results/fidelity_fashion.db (not tracked
in git: this command regenerates it; the runs resume from it, across sessions):

* band: 16 architectures of search_spaces/efficientvit64.yaml measured within M0±25 % on this
  CPU (the hard case a search faces: all about as fast, which one is best?);
* space: 8 architectures drawn from the whole space.

Each architecture is scored by every proxy (the train proxy at 50 and 200 steps on 100 images
per class) and trained as the reference (5 epochs over 10,000 training images, 2 seeds, top-1
on the 10,000 official test images). The report is built from whatever is stored, so it can be
written while the runs are unfinished (it says how many architectures are complete).

    uv run python benchmarks/proxy_fidelity_fashion.py             # run (resumes), then report
    uv run python benchmarks/proxy_fidelity_fashion.py --report-only
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._report import write_report
from effvit_nas.fidelity.ranking import agreement

STORAGE = "sqlite:///results/fidelity_fashion.db"
COMMON = [
    "--space", "efficientvit64", "--data", "fashion-mnist", "--img-size", "64",
    "--train-per-class", "100", "--val-per-class", "100",
    "--reference-epochs", "5", "--reference-per-class", "1000", "--seeds", "2", "--storage", STORAGE,
]  # fmt: skip
STUDIES = {"band": ["--band", "M0±25%", "--archs", "16"], "space": ["--archs", "8"]}


def command(study: str, *extra: str) -> list[str]:
    return ["effvit-nas", "fidelity", *COMMON, *STUDIES[study], *extra]


def report_of(study: str) -> dict | None:
    r = subprocess.run(command(study, "--report-only", "--json"), capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def _ci(value: float, ci: list[float]) -> str:
    return f"{value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def table(rows: list[dict], ceiling: dict | None = None, reference_seconds: float | None = None) -> list[str]:
    lines = ["| proxy | Kendall τ [95 % CI] | Spearman ρ [95 % CI] | top-5 overlap | s / candidate | note |", "|---|---|---|---|---|---|"]
    for row in rows:
        a = row["agreement"]
        cells = (
            f"{_ci(a['kendall'], a['kendall_ci'])} | {_ci(a['spearman'], a['spearman_ci'])} | {a['top_k_overlap']:.2f}"
            if a
            else "- | - | -"
        )
        seconds = f"{row['seconds']:.2f}" if row["seconds"] is not None else "-"
        lines.append(f"| {row['proxy']} | {cells} | {seconds} | {row['note']} |")
    if ceiling:
        c = ceiling
        lines.append(
            f"| *reference seed 0 vs seed 1 (ceiling)* | {_ci(c['kendall'], c['kendall_ci'])} | {_ci(c['spearman'], c['spearman_ci'])} "
            f"| {c['top_k_overlap']:.2f} | {reference_seconds:.0f} | |"
        )
    return lines


def pooled(reports: list[dict]) -> list[str]:
    """Agreement over the architectures of both studies together (same proxies, same reference)."""
    archs = [a for r in reports for a in r["per_arch"] if a["complete"]]
    if len(archs) < 3:
        return []
    ref = [statistics.fmean(a["reference"]) for a in archs]
    lines = ["| proxy | Kendall τ [95 % CI] | Spearman ρ [95 % CI] |", "|---|---|---|"]
    proxies = [row["proxy"] for row in reports[0]["rows"]]
    for p in proxies:
        pairs = [(a["proxies"][p], m) for a, m in zip(archs, ref, strict=True) if p in a["proxies"]]
        if len(pairs) >= 3:
            g = agreement([v for v, _ in pairs], [m for _, m in pairs])
            lines.append(f"| {p} | {_ci(g.kendall, g.kendall_ci)} | {_ci(g.spearman, g.spearman_ci)} |")
    return [f"### Both studies pooled ({len(archs)} architectures)", "", *lines, ""]


def arch_table(report: dict) -> list[str]:
    lines = ["| architecture | img/s | reference top-1 % (seeds) | train@200 top-1 % | params (M) |", "|---|---|---|---|---|"]
    for a in report["per_arch"]:
        ref = " / ".join(f"{100 * v:.1f}" for v in a["reference"]) if a["reference"] else "-"
        t200 = a["proxies"].get("train@200")
        lines.append(
            f"| {a['hash']} | {a['throughput']:.0f} | {ref} | {100 * t200:.1f} | {a['proxies'].get('params', 0) / 1e6:.2f} |"
            if t200 is not None
            else f"| {a['hash']} | {a['throughput']:.0f} | {ref} | - | - |"
        )
    return lines


def markdown(reports: dict[str, dict], note: str | None) -> str:
    out = [
        "# Proxy fidelity on real images: Fashion-MNIST at 64 px",
        "",
        "Reference: the proxies' recipe (AdamW, warm-up + cosine, label smoothing 0.1, flips + padded crops) for 5 epochs over",
        "10,000 training images (1,000 per class), batch 64, top-1 on the 10,000 official test images; 2 seeds per architecture.",
        "Proxies: on 100 training images per class (train proxy top-1 on 100 test images per class); zero-cost scores on one batch.",
        "Intervals: percentile bootstrap over architectures (2,000 resamples). CPU: this 2-core machine, 2 torch threads.",
        "",
        *([f"Note: {note}", ""] if note else []),
    ]
    for name, report in reports.items():
        title = "Inside one throughput band: M0±25 % on this CPU" if name == "band" else "Across the whole space"
        out += [
            f"## {title} (study `{report['study']}`)",
            "",
            f"{report['complete']} of {report['archs']} architectures have both reference seeds.",
            "",
        ]
        out += [*table(report["rows"], report["ceiling"], report["reference_seconds"]), ""]
        if report["first_seed_rows"]:
            out += [
                f"Partial, until every seed ran: against reference seed 0 alone, over the {report['first_seed']} architectures that have it.",
                "",
                *table(report["first_seed_rows"]),
                "",
            ]
        out += [*arch_table(report), ""]
    out += pooled(list(reports.values()))
    for name in reports:
        out += [f"Command ({name}): `{shlex.join(['uv', 'run', *command(name)])}`", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/proxy_fidelity_fashion.md"))
    ap.add_argument("--note", default=None, help="a line about this run written under the header (e.g. what shared the machine)")
    args = ap.parse_args()
    if not args.report_only:
        for name in STUDIES:
            subprocess.run(command(name), check=True, stdout=sys.stderr)
    reports = {name: r for name in STUDIES if (r := report_of(name))}
    write_report(args.out, markdown(reports, args.note), reports)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
