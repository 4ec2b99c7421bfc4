"""Predicting throughput from architecture features, to skip clearly infeasible candidates.

On a CPU at batch 16 and one thread, the time of a forward pass is a sum of costs, so the model
fits the time per image as a non-negative combination of cost terms (refit after every
measurement of the current search, so device-specific by construction):

* a constant: the stem, the patch mergings and the classifier, whose op count is the same for
  every 3-stage architecture;
* MACs: arithmetic, the cost that grows with width, FFN ratio, resolution and attention size;
* parameters: every weight is read once per batch, and on small feature maps (the last
  stages) that traffic, not arithmetic, is what the 1x1 convs wait on;
* sequential head calls, the sum over stages of depth x heads: cascaded group attention runs
  its heads one after another, about ten small ops each (Q/K/V conv, depthwise conv,
  two matmuls, softmax, ...), and on tiny tensors each op costs its fixed dispatch overhead
  whatever its size. Heads without the depth weight, or depth alone, miss that cost.

Non-negative least squares on the times relative to their own measurement (so every point
counts by its relative error, as the noise is relative) keeps each term a cost: no
negative coefficient to extrapolate with. A candidate is skipped only when even the
optimistic end of its prediction interval (see :class:`FeasibilityModel`) stays under the
budget, and only once ``min_points`` measurements exist. A fraction of would-be skips is
measured anyway (audit) so the search can report how often skipping was right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from effvit_nas.arch.config import ArchConfig


def features(config: ArchConfig, params: int, macs: int) -> np.ndarray:
    """The cost terms of ``config`` (module doc): constant, MACs, params, sequential head calls."""
    head_calls = sum(d * h for d, h in zip(config.depths, config.heads, strict=True))
    return np.array([1.0, float(macs), float(params), float(head_calls)])


@dataclass
class FeasibilityModel:
    """Online predictor of throughput; see the module doc.

    A skip needs the optimistic bound of a prediction interval under the budget: ``z`` normal
    standard deviations of the relative residual, turned into the Student-t quantile of the
    fit's degrees of freedom and widened by the candidate's leverage, so that 8 points and 4
    terms or a candidate far from everything measured do not pass for certainty.

    Attributes:
        budget: throughput budget, img/s.
        z: optimism margin, in normal standard deviations (default 3: 1 in 740 one-sided).
        min_points: measurements needed before any skip (default 8).
    """

    budget: float
    z: float = 3.0
    min_points: int = 8
    xs: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # s/image
    _fit: CostFit | None = None

    def add(self, x: np.ndarray, throughput: float) -> None:
        self.xs.append(x)
        self.times.append(1.0 / throughput)
        if len(self.times) >= self.min_points:
            self._fit = CostFit.of(np.stack(self.xs), np.asarray(self.times))

    def predict(self, x: np.ndarray) -> float | None:
        """Predicted throughput (img/s), or None before the model is fitted."""
        return None if self._fit is None else 1.0 / self._fit.time(x)

    def clearly_infeasible(self, x: np.ndarray) -> bool:
        if self._fit is None:
            return False
        return -math.log(self._fit.time(x)) + self._fit.margin(x, self.z) < math.log(self.budget)


@dataclass(frozen=True)
class CostFit:
    """Non-negative least squares of time on cost terms, in relative error."""

    scale: np.ndarray  # each term's largest value so far, so the solver sees numbers near 1
    coef: np.ndarray  # s/image per scaled unit of each term, all >= 0
    inverse: np.ndarray  # (A'A + light ridge)^-1 over every term, for the leverage of a new point
    sigma: float  # residual standard deviation of log-time
    dof: int

    @classmethod
    def of(cls, X: np.ndarray, times: np.ndarray) -> CostFit:
        scale = X.max(0)
        scale = np.where(scale > 0, scale, 1.0)
        A = X / scale / times[:, None]  # row i predicts 1 when the fit matches time i exactly
        coef, _ = nnls(A, np.ones(len(times)))
        resid = np.log(times) - np.log((X / scale) @ coef)
        # every term counts as a parameter and widens the interval, also one the fit held at
        # zero or one the points do not vary in: a candidate that differs from everything
        # measured in such a term is far, not certain
        dof = max(len(times) - X.shape[1], 1)
        sigma = max(float(np.sqrt(resid @ resid / dof)), 0.02)  # never claim timing is exact
        gram = A.T @ A
        inverse = np.linalg.inv(gram + 1e-3 * np.trace(gram) / len(gram) * np.eye(len(gram)))
        return cls(scale, coef, inverse, sigma, dof)

    def time(self, x: np.ndarray) -> float:
        return max(float((x / self.scale) @ self.coef), 1e-12)

    def margin(self, x: np.ndarray, z: float) -> float:
        """The one-sided prediction-interval half-width of log-throughput at ``z`` normal
        standard deviations."""
        from scipy.stats import norm, t  # lazy: SciPy costs start-up time

        a = x / self.scale / self.time(x)
        spread = self.sigma * math.sqrt(1 + float(a @ self.inverse @ a))
        return float(t.ppf(norm.cdf(z), self.dof)) * spread
