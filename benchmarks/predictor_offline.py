"""Which efficiency-predictor features and fit generalise best? (results/predictors.md)

Reads measurements already stored (no timing here): per store and (device, protocol) group of
at least 30 architectures, 5-fold cross-validated predictions of every feature set of
:mod:`effvit_nas.predict.features` with the NNLS cost fit, and, for comparison, a
gradient-boosted model (scikit-learn's HistGradientBoostingRegressor on log time over the
``op-types`` features, not a dependency of effvit-nas: run with ``uv run --with scikit-learn``):

    uv run --with scikit-learn python benchmarks/predictor_offline.py \\
        sqlite:///results/fidelity_fashion.db sqlite:///results/searched_fashion.db \\
        sqlite:///results/throughput_model_paired.db --out results/predictor_offline.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._report import write_report
from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.predict.efficiency import cross_validated, fold_ids, held_out_stats
from effvit_nas.predict.features import FEATURE_SETS, arch_features, feature_matrix


def groups(url: str, min_archs: int) -> dict[tuple[str, str], dict[str, tuple[dict, float]]]:
    """(device, protocol) -> config hash -> (config, throughput), the latest figure of each."""
    out: dict[tuple[str, str], dict[str, tuple[dict, float]]] = defaultdict(dict)
    for device, protocol, m in MeasurementStore(url).all():
        out[(device, protocol)][m.config_hash] = (m.config, m.throughput)
    return {k: v for k, v in out.items() if len(v) >= min_archs}


def gbm_cv(X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray | None:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        return None
    ids = fold_ids(len(y), folds, seed)
    out = np.empty(len(y))
    for k in np.unique(ids):
        test = ids == k
        model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, min_samples_leaf=5, random_state=seed)
        model.fit(np.log(X[~test][:, 1:] + 1), np.log(1 / y[~test]))
        out[test] = 1 / np.exp(model.predict(np.log(X[test][:, 1:] + 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("storage", nargs="+")
    ap.add_argument("--min-archs", type=int, default=30)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for url in args.storage:
        for (device, protocol), archs in groups(url, args.min_archs).items():
            feats = [arch_features(ArchConfig.from_dict(c)) for c, _ in archs.values()]
            y = np.array([t for _, t in archs.values()])
            for name in FEATURE_SETS:
                held = held_out_stats(cross_validated(feature_matrix(feats, name), y, args.folds), y, args.folds)
                rows.append({"storage": url, "device": device, "protocol": protocol, "model": f"nnls/{name}", **held.to_dict()})
            pred = gbm_cv(feature_matrix(feats, "op-types"), y, args.folds, 0)
            if pred is not None:
                held = held_out_stats(pred, y, args.folds)
                rows.append({"storage": url, "device": device, "protocol": protocol, "model": "gbm/op-types", **held.to_dict()})
            for r in rows[-len(FEATURE_SETS) - (pred is not None) :]:
                print(
                    f"{Path(url).name:28} {protocol:28} n={r['n']:3}  {r['model']:22} ±5%: {100 * r['within_5']:5.1f} %  "
                    f"±10%: {100 * r['within_10']:5.1f} %  Spearman {r['spearman']:+.3f}  median |err| {100 * r['median_abs_error']:.1f} %"
                )
    if args.out:
        write_report(args.out.with_suffix(".md"), markdown(rows, args.out), rows)


def markdown(rows: list[dict], out: Path) -> str:
    """Every (store, protocol, fit) row as a table; the discussion lives in results/predictors.md."""
    lines = [
        "# Efficiency predictors: held-out error per feature set and fit",
        "",
        "| store | device | protocol | n | model | within 5 % | within 10 % | Spearman | median abs. error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['storage']).name} | {r['device']} | {r['protocol']} | {r['n']} | {r['model']} | "
            f"{100 * r['within_5']:.1f} % | {100 * r['within_10']:.1f} % | {r['spearman']:+.3f} | {100 * r['median_abs_error']:.1f} % |"
        )
    stores = " ".join(dict.fromkeys(r["storage"] for r in rows))
    return "\n".join([*lines, "", f"Command: `uv run python benchmarks/predictor_offline.py {stores} --out {out}`"])


if __name__ == "__main__":
    main()
