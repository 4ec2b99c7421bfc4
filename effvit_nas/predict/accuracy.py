"""The accuracy predictor: which cheap signal, alone or with architecture features, ranks
architectures as their trained top-1 does, judged on architectures held out of any fit.

Candidates, all from what a fidelity study already stores (no training here):

* ``proxy:<name>``: a stored proxy score as is (MACs, params, zero-cost scores, short
  trainings, the supernet's top-1): nothing is fitted, so every architecture is held out;
* ``ridge:features``: ridge regression of the reference top-1 on log architecture features
  (:func:`effvit_nas.predict.features.arch_features`);
* ``ridge:features+<name>``: the same with one proxy score as an extra column.

Ridge predictions are leave-one-out (each architecture predicted by a fit without it), so
every candidate's Kendall/Spearman is on held-out architectures. The choice is the candidate
with the highest held-out Kendall tau over every architecture with a complete reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from effvit_nas.arch.config import ArchConfig
from effvit_nas.fidelity.ranking import Agreement, agreement
from effvit_nas.fidelity.store import FidelityStore
from effvit_nas.predict.features import arch_features

RIDGE_FEATURES = ("macs", "params", "activations", "calls", "head_calls", "macs_attention", "macs_dwconv")
ALPHA = 1.0  # ridge penalty on standardised columns: strong enough that 24 points fit 8 columns stably


@dataclass(frozen=True)
class ScoredArchs:
    """Architectures of fidelity studies with their reference top-1 (mean over its seeds) and
    every proxy score stored for all of them."""

    studies: tuple[str, ...]
    configs: tuple[ArchConfig, ...]
    study_of: tuple[str, ...]
    reference: np.ndarray
    proxies: dict[str, np.ndarray]


def load_scored(storage: str, studies: list[str]) -> ScoredArchs:
    """Every architecture of ``studies`` with a reference top-1 of each of its seeds; proxies
    are the ones every such architecture has."""
    rows = []
    for name in studies:
        store = FidelityStore(storage, name, create=False)
        for arch in store.archs():
            h = arch["hash"]
            refs = [r for k in store.keys("reference", h) if (r := store.get("reference", h, k)) is not None]
            if len(refs) < 2:  # a reference is the mean of its seeds; one seed alone is not comparable
                continue
            scores = {k: r.value for k in store.keys("proxy", h) if (r := store.get("proxy", h, k)) is not None}
            rows.append((name, ArchConfig.from_dict(arch["config"]), float(np.mean([r.value for r in refs])), scores))
    common = set.intersection(*(set(r[3]) for r in rows)) if rows else set()
    return ScoredArchs(
        studies=tuple(studies),
        configs=tuple(r[1] for r in rows),
        study_of=tuple(r[0] for r in rows),
        reference=np.array([r[2] for r in rows]),
        proxies={k: np.array([r[3][k] for r in rows]) for k in sorted(common)},
    )


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def ridge_loo(X: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Each point's prediction by a ridge fit (standardised columns, free intercept) on the others."""
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        A, a = _standardise(X[keep], X[i : i + 1])
        coef = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ (y[keep] - y[keep].mean()))
        out[i] = float((a @ coef)[0]) + y[keep].mean()
    return out


def feature_columns(configs: tuple[ArchConfig, ...]) -> np.ndarray:
    """log of each :data:`RIDGE_FEATURES` (costs span orders of magnitude) and the total depth."""
    feats = [arch_features(c) for c in configs]
    cols = [[math.log1p(f[n]) for n in RIDGE_FEATURES] + [float(sum(c.depths))] for f, c in zip(feats, configs, strict=True)]
    return np.array(cols)


def candidates(data: ScoredArchs) -> dict[str, np.ndarray]:
    """Held-out predictions (higher: better) of every candidate, by name."""
    X = feature_columns(data.configs)
    out = {f"proxy:{name}": score for name, score in data.proxies.items()}
    out["ridge:features"] = ridge_loo(X, data.reference)
    for name, score in data.proxies.items():
        out[f"ridge:features+{name}"] = ridge_loo(np.column_stack([X, score]), data.reference)
    return out


def rank_candidates(predictions: dict[str, np.ndarray], reference: np.ndarray, resamples: int = 2000) -> list[tuple[str, Agreement]]:
    """Every candidate's held-out agreement with ``reference``, best Kendall first."""
    scored = [(name, agreement(pred, reference, resamples=resamples)) for name, pred in predictions.items()]
    return sorted(scored, key=lambda s: -s[1].kendall)


@dataclass(frozen=True)
class RidgeAccuracy:
    """Ridge regression of top-1 on :func:`feature_columns` (plus one proxy score when
    ``proxy`` is set), on standardised columns: the ``ridge:features[+proxy]`` candidate
    fitted on every scored architecture, to predict new ones."""

    proxy: str | None
    mean: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, data: ScoredArchs, proxy: str | None = None, alpha: float = ALPHA) -> RidgeAccuracy:
        X = feature_columns(data.configs)
        if proxy is not None:
            X = np.column_stack([X, data.proxies[proxy]])
        mean, sd = X.mean(0), np.where(X.std(0) > 0, X.std(0), 1.0)
        A, y = (X - mean) / sd, data.reference
        coef = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ (y - y.mean()))
        return cls(proxy, mean, sd, coef, float(y.mean()))

    def predict(self, configs: tuple[ArchConfig, ...], scores: np.ndarray | None = None) -> np.ndarray:
        """Predicted top-1 of ``configs`` (``scores``: their ``proxy`` score, when it has one)."""
        X = feature_columns(configs)
        if self.proxy is not None:
            if scores is None:
                raise ValueError(f"predicting with proxy {self.proxy!r} needs its scores")
            X = np.column_stack([X, scores])
        return ((X - self.mean) / self.sd) @ self.coef + self.intercept
