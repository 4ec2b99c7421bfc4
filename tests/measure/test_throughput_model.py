"""The feasibility model alone, on synthetic timings that are exactly a sum of non-negative cost
terms (the form the model fits), so every expected prediction is known."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import spearmanr

from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.throughput_model import FeasibilityModel, features

# s/image = COST . x for x = (1, MACs, params, sequential head calls)
COST = np.array([2e-4, 4e-12, 1e-10, 3e-5])


def _x(rng: np.random.Generator) -> np.ndarray:
    return np.array([1.0, rng.uniform(5e6, 3e8), rng.uniform(1e6, 2e7), rng.integers(3, 40)])


def _true(x: np.ndarray) -> float:
    return 1.0 / float(x @ COST)


def _fitted(budget: float, points: int = 12) -> FeasibilityModel:
    model, rng = FeasibilityModel(budget), np.random.default_rng(0)
    for _ in range(points):
        x = _x(rng)
        model.add(x, _true(x))
    return model


def test_below_its_minimum_of_points_it_predicts_and_skips_nothing():
    x = np.array([1.0, 3e10, 1e9, 500])  # far heavier than anything it saw: hopeless
    model = _fitted(budget=1e9, points=FeasibilityModel.min_points - 1)
    assert model.predict(x) is None and not model.clearly_infeasible(x)
    model.add(x, _true(x))  # the min_points-th measurement: now it judges
    assert model.predict(x) is not None and model.clearly_infeasible(x)


def test_exact_sums_of_costs_are_predicted_within_one_percent():
    model, rng = _fitted(budget=1.0), np.random.default_rng(1)
    for x in (_x(rng) for _ in range(20)):  # points it never saw
        assert model.predict(x) == pytest.approx(_true(x), rel=0.01)


@pytest.mark.parametrize("fraction, skipped", [(0.97, False), (0.5, True)])
def test_only_a_prediction_clearly_under_budget_is_infeasible(fraction, skipped):
    """The margin is a prediction interval at z = 3, never narrower than 3 x 2 %: a candidate
    predicted 3 % under the budget is within the noise, one at half the budget is not."""
    x, fitted = _x(np.random.default_rng(2)), _fitted(budget=1.0)
    assert replace(fitted, budget=fitted.predict(x) / fraction).clearly_infeasible(x) is skipped


def test_few_points_or_a_far_candidate_widen_the_margin():
    """With 6 % noise, a prediction 30 % under the budget is no skip on 8 points (4 degrees of
    freedom: the Student-t quantile is ~7 instead of 3) but is one on 40; and on 40 points a
    candidate whose time would be made of other terms than anything measured (nearly all the
    constant) gets a wider margin than one among them. Errors are relative, so a candidate
    only scaled up from the measured ones is not far."""
    rng = np.random.default_rng(3)

    def noisy(points: int) -> FeasibilityModel:
        model = FeasibilityModel(1.0)
        for _ in range(points):
            x = _x(rng)
            model.add(x, _true(x) * math.exp(rng.normal(0, 0.06)))
        return model

    x = _x(rng)
    few, many = noisy(8), noisy(40)
    assert not replace(few, budget=few.predict(x) / 0.7).clearly_infeasible(x)
    assert replace(many, budget=many.predict(x) / 0.7).clearly_infeasible(x)
    far = np.array([1.0, 1e6, 1e5, 1])
    assert many._fit.margin(far, 3.0) > 2 * many._fit.margin(x, 3.0)


def _config(rng: np.random.Generator) -> ArchConfig:
    def ints(low: int, high: int) -> list[int]:
        return [int(v) for v in rng.integers(low, high, 3)]

    widths = [48 * k for k in ints(1, 8)]  # divisible by any head count 1..4, drawn apart from it
    return ArchConfig(widths=widths, depths=ints(1, 6), heads=ints(1, 5), kernels=(5, 5, 5, 5), img_size=64)


def test_features_rank_a_cpu_where_sequential_heads_dominate():
    """A CPU whose time is mostly the per-op overhead of heads run one after another (depth x
    heads per stage), plus some arithmetic: after 20 measurements the model ranks 60 unseen
    configs almost perfectly. The old features (heads not weighted by depth) reached 0.95."""
    rng = np.random.default_rng(4)

    def measured(config: ArchConfig) -> tuple[np.ndarray, float]:
        macs = 1e6 * sum(w * d for w, d in zip(config.widths, config.depths, strict=True))
        x = features(config, params=int(macs // 10), macs=int(macs))
        calls = sum(d * h for d, h in zip(config.depths, config.heads, strict=True))
        return x, 1.0 / (1e-4 + 5e-5 * calls + 2e-13 * macs)

    model = FeasibilityModel(budget=1.0)
    for _ in range(20):
        model.add(*measured(_config(rng)))
    unseen = [measured(_config(rng)) for _ in range(60)]
    rho = spearmanr([model.predict(x) for x, _ in unseen], [tp for _, tp in unseen]).statistic
    assert rho > 0.99
