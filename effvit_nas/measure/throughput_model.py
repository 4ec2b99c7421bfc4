"""Predicting throughput from architecture features, to skip clearly infeasible candidates.

A least-squares fit of log(throughput) on log MACs, log params, total depth, attention
tokens and heads, refit after every measurement of the current search (device-specific by
construction). A candidate is skipped only when even its optimistic prediction
(mean + ``z`` residual standard deviations) stays under the budget, and only once
``min_points`` measurements exist. A fraction of would-be skips is measured anyway (audit)
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

    Attributes:
        budget: throughput budget, img/s.
        z: optimism margin in residual standard deviations (default 3).
        min_points: measurements needed before any skip (default 8).
    """

    budget: float
    z: float = 3.0
    min_points: int = 8
    xs: list[np.ndarray] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    _coef: np.ndarray | None = None
    _sigma: float = math.inf

    def add(self, x: np.ndarray, throughput: float) -> None:
        self.xs.append(x)
        self.ys.append(math.log(throughput))
        if len(self.ys) >= self.min_points:
            X, y = np.stack(self.xs), np.asarray(self.ys)
            # ridge keeps the fit sane while there are about as many points as features
            lam = 1e-3 * np.eye(X.shape[1])
            self._coef = np.linalg.solve(X.T @ X + lam, X.T @ y)
            resid = y - X @ self._coef
            dof = max(len(y) - X.shape[1], 1)
            self._sigma = max(float(np.sqrt(resid @ resid / dof)), 0.02)

    def predict(self, x: np.ndarray) -> float | None:
        """Predicted throughput (img/s), or None before the model is fitted."""
        return None if self._coef is None else float(math.exp(x @ self._coef))

    def clearly_infeasible(self, x: np.ndarray) -> bool:
        if self._coef is None:
            return False
        return float(x @ self._coef) + self.z * self._sigma < math.log(self.budget)
