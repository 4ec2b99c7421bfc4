"""Does a stored efficiency predictor hold on architectures it never saw? (issue 48's goal)

`profile` judges its predictor on folds held out of its own calibration, and `--feature-set
best` picks the set with the best of those figures, which flatters it slightly. This takes the
predictor `profile` stored for a target (default protocol flags), samples architectures of the
same space that are not in its calibration (the scrambled Halton sequence with another seed),
measures them through the engine as `profile` does (anchored to the same stored anchor), and
compares each with its prediction. Run on a quiet machine, after `profile`:

    uv run effvit-nas profile --space efficientvit64 --metric latency --storage sqlite:///prof.db
    uv run python benchmarks/predictor_unseen.py --space efficientvit64 --metrics throughput,latency \\
        --archs 30 --storage sqlite:///prof.db --out results/predictor_unseen_cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.errors import UserError
from effvit_nas.measure.actor import check_local
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import engine_measure, preset_configs, space_sample
from effvit_nas.predict.efficiency import fit_efficiency, held_out_stats
from effvit_nas.predict.features import FEATURE_SETS
from effvit_nas.predict.profile import load_profile, predict_configs


def every_feature_set(record: dict[str, Any], configs: list[ArchConfig], measured: np.ndarray) -> dict[str, Any]:
    """Each feature set fitted on the record's calibration (as `profile` fits it): its
    held-out figures there and its figures on the unseen ``configs``."""
    cal = record["calibration"]
    cal_feats = [analytic_features(ArchConfig.from_dict(c)) for c in cal["configs"]]
    feats = [analytic_features(c) for c in configs]
    out = {}
    for name in FEATURE_SETS:
        predictor, held = fit_efficiency(cal_feats, np.array(cal["throughput"]), name, 5, 0)
        predicted = np.array([predictor.predict(f).throughput for f in feats])
        stats = held_out_stats(predicted, measured, folds=0).to_dict()
        stats.pop("folds")
        out[name] = {"calibration_held_out": held.to_dict(), "unseen": stats}
    return out


def unseen(space_name: str, metric: str, archs: int, seed: int, storage: str) -> dict[str, Any]:
    """The stored predictor of (cpu, default protocol, ``metric``) against ``archs`` fresh
    measurements of architectures outside its calibration."""
    space = load_space(space_name)
    settings = BenchSettings.for_device("cpu", metric=metric)
    record = load_profile(storage, check_local("cpu", settings), settings, metric, space_name, "cpu")
    known = {ArchConfig.from_dict(c).short_hash() for c in record["calibration"]["configs"]}
    configs = [c for c in space_sample(space, archs + len(known), seed) if c.short_hash() not in known][:archs]
    anchor = preset_configs(space)[record["anchor"].split("@")[0]] if record["anchor"] else None
    t0 = time.perf_counter()
    measured = np.array([m.throughput for m in engine_measure("cpu", settings, MeasurementStore(storage), anchor)(configs, False)])
    seconds = time.perf_counter() - t0
    predicted = np.array([p["throughput"] for p in predict_configs(record, tuple(c.short_hash() for c in configs), configs)])
    stats = held_out_stats(predicted, measured, folds=0).to_dict()
    stats.pop("folds")
    errors = predicted / measured - 1
    return {
        "metric": metric,
        "feature_set": record["predictor"]["feature_set"],
        "fitted_at": record["fitted_at"],
        "calibration_archs": record["calibration"]["archs"],
        "calibration_held_out": record["held_out"],
        "unseen": stats,
        "worst": sorted(((float(e), c.short_hash()) for e, c in zip(errors, configs, strict=True)), key=lambda t: -abs(t[0]))[:3],
        "measure_seconds": seconds,
        "feature_sets": every_feature_set(record, configs, measured),
        "configs": [c.short_hash() for c in configs],
        "measured": measured.tolist(),
        "predicted": predicted.tolist(),
        "profile": record,  # the calibration's configs and figures: benchmarks/predictor_features.py re-reads them
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Efficiency predictors on architectures outside their calibration\n",
        f"`{command}`\n",
        "Each row: the predictor `profile` stored for the target, judged on architectures sampled "
        "from the same space with another Halton seed and measured afresh (anchored as `profile` "
        "measures). Beside it, the figures `profile` printed for folds held out of its own calibration.\n",
        "| target | features | calibration held out within ±10 % | unseen archs | within ±5 % | within ±10 % | Spearman | median abs error | worst |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u, h = r["unseen"], r["calibration_held_out"]
        worst = ", ".join(f"{e:+.1%}" for e, _ in r["worst"])
        lines.append(
            f"| trace {r['metric']} | {r['feature_set']} | {h['within_10']:.1%} ({h['n']}) | {u['n']} | {u['within_5']:.1%} | "
            f"{u['within_10']:.1%} | {u['spearman']:+.3f} | {u['median_abs_error']:.1%} | {worst} |"
        )
    lines += [
        "",
        "Every feature set fitted on the same calibration (5-fold held out there, and the fit on all of it judged on the unseen architectures):",
        "",
        "| target | features | calibration held out within ±10 % | unseen within ±10 % | unseen within ±5 % | unseen median abs error |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name, f in r.get("feature_sets", {}).items():
            h, u = f["calibration_held_out"], f["unseen"]
            lines.append(
                f"| trace {r['metric']} | {name} | {h['within_10']:.1%} | {u['within_10']:.1%} | {u['within_5']:.1%} | {u['median_abs_error']:.1%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="efficientvit64")
    ap.add_argument("--metrics", default="throughput,latency")
    ap.add_argument("--archs", type=int, default=30, help="unseen architectures per target (default 30)")
    ap.add_argument("--seed", type=int, default=1, help="Halton seed of the unseen sample (profile's default is 0)")
    ap.add_argument("--storage", required=True, help="the store `profile` wrote (figures and predictors)")
    ap.add_argument("--out", type=Path, default=Path("results/predictor_unseen_cpu"))
    args = ap.parse_args()
    try:
        rows = [unseen(args.space, m, args.archs, args.seed, args.storage) for m in args.metrics.split(",")]
    except UserError as e:  # no profile stored for a target: one line, exit 2
        ap.error(str(e))
    command = "uv run python benchmarks/predictor_unseen.py " + " ".join(sys.argv[1:])
    write_report(args.out.with_suffix(".md"), markdown(rows, command), {"rows": rows})
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
