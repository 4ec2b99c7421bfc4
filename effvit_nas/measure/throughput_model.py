"""Predicting throughput from architecture features, to skip clearly infeasible candidates.

A least-squares fit of log(throughput) on log MACs, log params, total depth, attention
tokens and heads, refit after every measurement of the current search (device-specific by
construction). A candidate is skipped only when even the optimistic end of its prediction
interval stays under the budget, and only once ``min_points`` measurements exist. A fraction of would-be skips is measured anyway (audit)
so the search can report how often skipping was right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from effvit_nas.arch.config import ArchConfig


def features(config: ArchConfig, params: int, macs: int) -> np.ndarray:
    tokens = sum(r * r * d for r, d in zip(config.resolutions(), config.depths, strict=True))
    return np.array([1.0, math.log(macs), math.log(params), float(sum(config.depths)), math.log1p(tokens), float(sum(config.heads))])


@dataclass
class FeasibilityModel:
    """Online predictor of log-throughput; see the module doc.

    The features are standardised before a light ridge, which never shrinks the intercept (the
    mean log-throughput), so exact log-linear data is fitted exactly. A skip needs the optimistic
    bound of a prediction interval under the budget: ``z`` normal standard deviations turned
    into the Student-t quantile of the fit's degrees of freedom and widened by the candidate's
    leverage, so that 8 points and 6 features (2 degrees of freedom) or a candidate far from
    everything measured do not pass for certainty.

    Attributes:
        budget: throughput budget, img/s.
        z: optimism margin, in normal standard deviations (default 3: 1 in 740 one-sided).
        min_points: measurements needed before any skip (default 8).
    """

    budget: float
    z: float = 3.0
    min_points: int = 8
    xs: list[np.ndarray] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    _fit: _Fit | None = None

    def add(self, x: np.ndarray, throughput: float) -> None:
        self.xs.append(x)
        self.ys.append(math.log(throughput))
        if len(self.ys) >= self.min_points:
            self._fit = _Fit.of(np.stack(self.xs)[:, 1:], np.asarray(self.ys))  # column 0 is the constant

    def predict(self, x: np.ndarray) -> float | None:
        """Predicted throughput (img/s), or None before the model is fitted."""
        return None if self._fit is None else float(math.exp(self._fit.mean(x[1:])))

    def clearly_infeasible(self, x: np.ndarray) -> bool:
        if self._fit is None:
            return False
        return self._fit.mean(x[1:]) + self._fit.margin(x[1:], self.z) < math.log(self.budget)


@dataclass(frozen=True)
class _Fit:
    """Ridge regression on standardised features with an unpenalised intercept."""

    centre: np.ndarray
    scale: np.ndarray
    intercept: float
    coef: np.ndarray
    inverse: np.ndarray  # (Z'Z + ridge)^-1, for the leverage of a new point
    n: int
    sigma: float  # residual standard deviation of log-throughput
    dof: int

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray) -> _Fit:
        centre, scale = X.mean(0), X.std(0)
        scale = np.where(scale > 0, scale, 1.0)  # a feature constant so far carries no slope
        Z = (X - centre) / scale
        # ridge keeps the fit sane while there are about as many points as features
        inverse = np.linalg.inv(Z.T @ Z + 1e-3 * np.eye(Z.shape[1]))
        coef = inverse @ Z.T @ (y - y.mean())
        resid = y - y.mean() - Z @ coef
        dof = max(len(y) - Z.shape[1] - 1, 1)
        sigma = max(float(np.sqrt(resid @ resid / dof)), 0.02)  # never claim timing is exact
        return cls(centre, scale, float(y.mean()), coef, inverse, len(y), sigma, dof)

    def mean(self, x: np.ndarray) -> float:
        return self.intercept + float(((x - self.centre) / self.scale) @ self.coef)

    def margin(self, x: np.ndarray, z: float) -> float:
        """The one-sided prediction-interval half-width at ``z`` normal standard deviations."""
        from scipy.stats import norm, t

        zx = (x - self.centre) / self.scale
        spread = self.sigma * math.sqrt(1 + 1 / self.n + float(zx @ self.inverse @ zx))
        return float(t.ppf(norm.cdf(z), self.dof)) * spread
