"""Which feature sets hold on measured calibrations, and how many architectures they need
(results/predictor_features_cpu.md). No timing here: it re-reads figures already measured.

Input: JSONs `benchmarks/predictor_unseen.py` wrote (``rows``: the unseen architectures' hashes
and figures, sampled with ``--seed``, and the `profile` record judged, with its calibration's
configs and figures; for a file from before it kept the record, ``--profiles`` gives a JSON of
records, key ``records``). Per target and file it pools the
calibration and the unseen architectures and reports, for every feature set:

* 5-fold held out over the pool (median and range over 10 fold shuffles);
* the calibration alone, 5-fold, as `profile` judges it, and the fit on the calibration judged
  on the unseen architectures (as `predictor_unseen.py` does);
* a learning curve: M0-M5 plus ``n`` sampled architectures drawn from the pool (20 draws per
  ``n``), 5-fold inside the draw and the fit judged on the rest of the pool.

    uv run python benchmarks/predictor_features.py --profiles results/predictor_profiles_cpu.json \\
        --unseen results/predictor_unseen_cpu.json,results/predictor_unseen_taps_cpu.json \\
        --out results/predictor_features_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.measure.throughput_model import CostFit
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import space_sample
from effvit_nas.predict.efficiency import cross_validated
from effvit_nas.predict.features import FEATURE_SETS, feature_matrix

SIZES = (20, 30, 40, 60)
DRAWS = 20


def within_10(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted / measured - 1) <= 0.10))


def fit_predict(X_fit: np.ndarray, y_fit: np.ndarray, X: np.ndarray) -> np.ndarray:
    fit = CostFit.of(X_fit, 1.0 / y_fit)
    return np.array([1.0 / fit.time(x) for x in X])


def pool(record: dict[str, Any], row: dict[str, Any], seed: int) -> tuple[list[ArchConfig], np.ndarray, int]:
    """The calibration's configs then the unseen ones (rebuilt from their Halton seed), their
    figures, and how many of them are the calibration's."""
    cal = [ArchConfig.from_dict(c) for c in record["calibration"]["configs"]]
    known = {c.short_hash() for c in cal}
    by_hash = {c.short_hash(): c for c in space_sample(load_space(record["space"]), len(row["configs"]) + len(known), seed)}
    configs = cal + [by_hash[h] for h in row["configs"]]
    return configs, np.array(record["calibration"]["throughput"] + row["measured"], dtype=float), len(cal)


def learning_curve(X: np.ndarray, y: np.ndarray, presets: np.ndarray) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    sampled, out = np.flatnonzero(~presets), {}
    for n in SIZES:
        if n + 10 > len(sampled):
            continue
        kfold, rest = [], []
        for draw in range(DRAWS):
            fit = np.concatenate([np.flatnonzero(presets), rng.choice(sampled, n, replace=False)])
            others = np.setdiff1d(np.arange(len(y)), fit)
            kfold.append(within_10(cross_validated(X[fit], y[fit], 5, draw), y[fit]))
            rest.append(within_10(fit_predict(X[fit], y[fit], X[others]), y[others]))
        out[str(n)] = {"kfold_median": float(np.median(kfold)), "kfold_min": min(kfold), "rest_median": float(np.median(rest))}
    return out


def analyse(record: dict[str, Any], row: dict[str, Any], seed: int) -> dict[str, Any]:
    configs, y, n_cal = pool(record, row, seed)
    feats = [analytic_features(c) for c in configs]
    labels = list(record["calibration"]["labels"]) + list(row["configs"])
    presets = np.array([label in PRESETS for label in labels])
    sets = {}
    for name in FEATURE_SETS:
        X = feature_matrix(feats, name)
        shuffles = [within_10(cross_validated(X, y, 5, s), y) for s in range(10)]
        sets[name] = {
            "pool_kfold_median": float(np.median(shuffles)),
            "pool_kfold_range": [min(shuffles), max(shuffles)],
            "calibration_kfold": within_10(cross_validated(X[:n_cal], y[:n_cal], 5, 0), y[:n_cal]),
            "unseen": within_10(fit_predict(X[:n_cal], y[:n_cal], X[n_cal:]), y[n_cal:]),
            "learning_curve": learning_curve(X, y, presets),
        }
    return {"metric": record["metric"], "fitted_at": record["fitted_at"], "calibration": n_cal, "unseen": len(y) - n_cal, "sets": sets}


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Efficiency-predictor feature sets on measured calibrations (re-read, no timing)\n",
        f"`{command}`\n",
        "Share of architectures predicted within ±10 % of their measurement. Pool: calibration + unseen "
        "architectures; learning curve: M0-M5 + n sampled from the pool (20 draws), 5-fold inside the draw "
        "and the fit judged on the rest of the pool (medians).\n",
    ]
    for r in rows:
        lines += [
            f"**trace {r['metric']}** (profile fitted {r['fitted_at']}; {r['calibration']} calibration + {r['unseen']} unseen architectures)\n",
            "| features | pool 5-fold (10 shuffles) | calibration 5-fold | calibration -> unseen | "
            + " | ".join(f"n={n}: 5-fold / rest" for n in SIZES)
            + " |",
            "|---|---|---|---|" + "---|" * len(SIZES),
        ]
        for name, s in r["sets"].items():
            lo, hi = s["pool_kfold_range"]
            curve = [s["learning_curve"].get(str(n)) for n in SIZES]
            cells = [f"{c['kfold_median']:.1%} / {c['rest_median']:.1%}" if c else "-" for c in curve]
            lines.append(
                f"| {name} | {s['pool_kfold_median']:.1%} ({lo:.1%}-{hi:.1%}) | {s['calibration_kfold']:.1%} | {s['unseen']:.1%} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=Path, help="a JSON of `profile` records (key 'records') for unseen rows without theirs")
    ap.add_argument("--unseen", required=True, help="predictor_unseen.py's JSONs, comma-separated")
    ap.add_argument("--seed", type=int, default=1, help="the Halton seed of the unseen sample (predictor_unseen.py's --seed)")
    ap.add_argument("--out", type=Path, default=Path("results/predictor_features_cpu"))
    args = ap.parse_args()
    records = json.loads(args.profiles.read_text())["records"] if args.profiles else []
    rows = []
    for path in args.unseen.split(","):
        for row in json.loads(Path(path).read_text())["rows"]:
            record = row.get("profile") or next((r for r in records if r["metric"] == row["metric"]), None)
            if record is None:
                ap.error(f"--unseen {path}: no profile record for {row['metric']} (give --profiles)")
            rows.append(analyse(record, row, args.seed))
    command = "uv run python benchmarks/predictor_features.py " + " ".join(sys.argv[1:])
    text = markdown(rows, command)
    write_report(args.out.with_suffix(".md"), text, {"command": command, "rows": rows})
    print(text)


if __name__ == "__main__":
    main()
