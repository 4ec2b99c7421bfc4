"""Which accuracy predictor ranks held-out architectures best? (results/predictors.md)

Reads the fidelity studies' stored scores (no training here) and ranks every candidate of
:mod:`effvit_nas.predict.accuracy` by held-out Kendall tau against the reference top-1, pooled
over the studies and per study:

    uv run python benchmarks/accuracy_predictor.py --storage sqlite:///results/fidelity_fashion.db \\
        --study fidelity-efficientvit64-fashion-mnist-M0pm25pct-s0 --study fidelity-efficientvit64-fashion-mnist-all-s0 \\
        --out results/accuracy_predictor.json
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks._report import write_report
from effvit_nas.fidelity.ranking import agreement
from effvit_nas.predict.accuracy import candidates, load_scored, rank_candidates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", action="append", required=True)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data = load_scored(args.storage, args.study)
    print(f"{len(data.configs)} architectures with a complete reference in {', '.join(args.study)}")
    rows = []
    preds = candidates(data)
    per_study = {}
    for s in args.study:  # the pooled fits' held-out predictions, judged within each study
        mask = np.array([x == s for x in data.study_of])
        per_study[s] = {name: agreement(pred[mask], data.reference[mask]) for name, pred in preds.items()}
    for name, a in rank_candidates(preds, data.reference):
        within = {s: round(per_study[s][name].kendall, 3) for s in args.study}
        rows.append({"candidate": name, **asdict(a), "kendall_by_study": within})
        print(
            f"{name:45} Kendall {a.kendall:+.2f} [{a.kendall_ci[0]:+.2f}, {a.kendall_ci[1]:+.2f}]  "
            f"Spearman {a.spearman:+.2f} [{a.spearman_ci[0]:+.2f}, {a.spearman_ci[1]:+.2f}]  by study "
            + ", ".join(f"{v:+.2f}" for v in within.values())
        )
    if args.out:
        record = {"studies": args.study, "n": len(data.configs), "candidates": rows}
        write_report(args.out.with_suffix(".md"), markdown(record, args.storage, args.out), record)


def markdown(record: dict, storage: str, out: Path) -> str:
    """The ranking as a table; the discussion lives in results/predictors.md."""
    lines = [
        "# Accuracy predictors ranked by held-out Kendall tau",
        "",
        f"{record['n']} architectures with a complete reference in {', '.join(record['studies'])}.",
        "",
        "| candidate | Kendall | 95 % CI | Spearman | Kendall by study |",
        "|---|---|---|---|---|",
    ]
    for r in record["candidates"]:
        lo, hi = r["kendall_ci"]
        by_study = ", ".join(f"{v:+.2f}" for v in r["kendall_by_study"].values())
        lines.append(f"| {r['candidate']} | {r['kendall']:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {r['spearman']:+.2f} | {by_study} |")
    studies = " ".join(f"--study {s}" for s in record["studies"])
    return "\n".join([*lines, "", f"Command: `uv run python benchmarks/accuracy_predictor.py --storage {storage} {studies} --out {out}`"])


if __name__ == "__main__":
    main()
