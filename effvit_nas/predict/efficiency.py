"""The efficiency predictor: time per image as a non-negative sum of per-operator-type costs.

The fit is :class:`effvit_nas.measure.throughput_model.CostFit` (non-negative least squares
in relative error, the feasibility screen's model) on a feature set of
:mod:`effvit_nas.predict.features`: each coefficient is a cost (seconds per MAC of a type, per
element moved, per kernel call), so the model can be read and extrapolates without negative
terms. Its quality is judged only on architectures held out of the fit (k-fold), and the
prediction interval is the held-out residuals' quantiles, not the fit's own residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from effvit_nas.errors import SettingError
from effvit_nas.measure.throughput_model import CostFit
from effvit_nas.predict.features import feature_matrix, feature_names

INTERVAL = 0.9  # coverage of the prediction interval (held-out residual quantiles 5 % and 95 %)
MIN_POINTS = 8


@dataclass(frozen=True)
class HeldOut:
    """How predictions on architectures held out of the fit compare with their measurements."""

    n: int
    folds: int
    within_5: float  # share within ±5 % of the measured throughput
    within_10: float
    spearman: float
    median_abs_error: float  # relative, of throughput
    residuals: tuple[float, ...]  # log(measured time / predicted time), one per architecture

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n", "folds", "within_5", "within_10", "spearman", "median_abs_error")}

    def subset(self, measured: np.ndarray, keep: np.ndarray) -> HeldOut:
        """The same held-out predictions judged on the ``keep`` points of ``measured`` only."""
        r = np.asarray(self.residuals)[keep]
        return held_out_stats(measured[keep] * np.exp(r), measured[keep], self.folds)


def held_out_stats(predicted: np.ndarray, measured: np.ndarray, folds: int) -> HeldOut:
    """:class:`HeldOut` of throughputs ``predicted`` (each by a fit without it) vs ``measured``."""
    from scipy.stats import spearmanr  # lazy: scipy.stats costs a second or more to import

    err = np.abs(predicted / measured - 1)
    return HeldOut(
        n=len(measured),
        folds=folds,
        within_5=float(np.mean(err <= 0.05)),
        within_10=float(np.mean(err <= 0.10)),
        spearman=float(spearmanr(predicted, measured).statistic),
        median_abs_error=float(np.median(err)),
        residuals=tuple(float(r) for r in np.log(predicted / measured)),
    )


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A fold number for each of ``n`` points, shuffled by ``seed``; at most ``n`` folds (LOO)."""
    k = min(folds, n)
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def cross_validated(X: np.ndarray, throughput: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each point's predicted throughput from a :class:`CostFit` on the other folds."""
    if len(throughput) < MIN_POINTS:
        raise SettingError("fit_efficiency.points", f"needs at least {MIN_POINTS} measured architectures, got {len(throughput)}")
    ids = fold_ids(len(throughput), folds, seed)
    out = np.empty(len(throughput))
    for k in np.unique(ids):
        test = ids == k
        fit = CostFit.of(X[~test], 1.0 / throughput[~test])
        out[test] = [1.0 / fit.time(x) for x in X[test]]
    return out


@dataclass(frozen=True)
class Prediction:
    """A predicted throughput (img/s) and its ``INTERVAL`` prediction interval."""

    throughput: float
    low: float
    high: float


@dataclass(frozen=True)
class EfficiencyPredictor:
    """A fitted :class:`CostFit` over ``feature_set``, with the held-out residual quantiles
    ``(q_low, q_high)`` of log(measured / predicted throughput) that make its interval."""

    feature_set: str
    fit: CostFit
    q_low: float
    q_high: float

    @classmethod
    def fitted(cls, features: list[dict[str, float]], throughput: np.ndarray, held_out: HeldOut, feature_set: str) -> EfficiencyPredictor:
        X = feature_matrix(features, feature_set)
        # residuals are log(predicted / measured) throughput: the measurement sits at predicted / exp(r)
        r = -np.asarray(held_out.residuals)
        lo, hi = np.quantile(r, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
        return cls(feature_set, CostFit.of(X, 1.0 / throughput), float(lo), float(hi))

    def predict(self, features: dict[str, float]) -> Prediction:
        x = feature_matrix([features], self.feature_set)[0]
        t = 1.0 / self.fit.time(x)
        return Prediction(t, t * math.exp(self.q_low), t * math.exp(self.q_high))

    def terms(self) -> dict[str, float]:
        """Each feature's coefficient in its own unit (seconds per image per unit)."""
        return {n: float(c / s) for n, c, s in zip(feature_names(self.feature_set), self.fit.coef, self.fit.scale, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        f = self.fit
        fit = {"scale": f.scale.tolist(), "coef": f.coef.tolist(), "inverse": f.inverse.tolist(), "sigma": f.sigma, "dof": f.dof}
        return {"feature_set": self.feature_set, "fit": fit, "q_low": self.q_low, "q_high": self.q_high}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EfficiencyPredictor:
        f = d["fit"]
        fit = CostFit(np.array(f["scale"]), np.array(f["coef"]), np.array(f["inverse"]), float(f["sigma"]), int(f["dof"]))
        return cls(d["feature_set"], fit, float(d["q_low"]), float(d["q_high"]))


def fit_efficiency(
    features: list[dict[str, float]], throughput: np.ndarray, feature_set: str, folds: int = 5, seed: int = 0
) -> tuple[EfficiencyPredictor, HeldOut]:
    """The predictor fitted on every point, and how the same fit did on held-out folds."""
    X = feature_matrix(features, feature_set)
    throughput = np.asarray(throughput, dtype=float)
    held = held_out_stats(cross_validated(X, throughput, folds, seed), throughput, folds)
    return EfficiencyPredictor.fitted(features, throughput, held, feature_set), held
