"""Rank agreement between a proxy and the reference, with bootstrap 95 % intervals.

Intervals resample *architectures* with replacement (percentile bootstrap): they say how much
the correlation depends on which architectures happened to be sampled, the uncertainty that
matters when a table of 16-24 architectures picks a default proxy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

Values = Sequence[float] | np.ndarray  # one value per architecture


@dataclass(frozen=True)
class Agreement:
    """Spearman's rho and Kendall's tau-b with (low, high) 95 % intervals, and the share of the
    reference's top-k that the proxy's top-k holds (k = ``top_k``)."""

    n: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    top_k: int
    top_k_overlap: float


def _corr(kind: str, a: np.ndarray, b: np.ndarray) -> float:
    return float(_corr_rows(kind, a[None], b[None])[0])


def _corr_rows(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho or Kendall's tau-b of each row pair of ``a`` and ``b`` (R x n), ties
    handled as scipy does; 0 where a side is constant (no ranking: no evidence either way).
    Vectorised because the bootstrap asks for thousands of them."""
    if kind == "spearman":
        ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
        ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
        num, den = (ra * rb).sum(1), np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    else:
        sa = np.sign(a[:, :, None] - a[:, None, :])
        sb = np.sign(b[:, :, None] - b[:, None, :])
        num, den = (sa * sb).sum((1, 2)), np.sqrt((sa**2).sum((1, 2)) * (sb**2).sum((1, 2)))
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _bootstrap_ci(kind: str, a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    idx = rng.integers(0, len(a), size=(resamples, len(a)))
    lo, hi = np.percentile(_corr_rows(kind, a[idx], b[idx]), [2.5, 97.5])
    return float(lo), float(hi)


def top_k_overlap(proxy: Values, reference: Values, k: int) -> float:
    """|top-k by proxy ∩ top-k by reference| / k (ties broken by position)."""
    k = min(k, len(proxy))
    best = lambda v: set(np.argsort(-np.asarray(v), kind="stable")[:k].tolist())  # noqa: E731
    return len(best(proxy) & best(reference)) / k if k else math.nan


def agreement(proxy: Values, reference: Values, top_k: int = 5, resamples: int = 2000, seed: int = 0) -> Agreement:
    """How well ``proxy`` orders the architectures as ``reference`` does (same order of
    architectures in both; higher is better in both)."""
    a, b = np.asarray(proxy, dtype=float), np.asarray(reference, dtype=float)
    if len(a) != len(b) or len(a) < 3:
        raise ValueError(f"need >= 3 paired values, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    return Agreement(
        n=len(a),
        spearman=_corr("spearman", a, b),
        spearman_ci=_bootstrap_ci("spearman", a, b, resamples, rng),
        kendall=_corr("kendall", a, b),
        kendall_ci=_bootstrap_ci("kendall", a, b, resamples, rng),
        top_k=min(top_k, len(a)),
        top_k_overlap=top_k_overlap(a, b, top_k),
    )
