"""The feasibility model alone, on synthetic feature vectors whose log-throughput is exactly
linear in them (the form the model fits), so every expected prediction is known."""

import math
from dataclasses import replace

import numpy as np
import pytest

from effvit_nas.measure.throughput_model import FeasibilityModel

# log throughput = COEF . x for x = (1, log MACs, log params, depth, log1p tokens, heads)
COEF = np.array([12.0, -0.6, -0.2, -0.05, -0.1, -0.02])


def _x(rng: np.random.Generator) -> np.ndarray:
    return np.array([1.0, rng.uniform(15, 20), rng.uniform(11, 15), rng.integers(3, 12), rng.uniform(3, 9), rng.integers(3, 12)])


def _true(x: np.ndarray) -> float:
    return math.exp(x @ COEF)


def _fitted(budget: float, points: int = 12) -> FeasibilityModel:
    model, rng = FeasibilityModel(budget), np.random.default_rng(0)
    for _ in range(points):
        x = _x(rng)
        model.add(x, _true(x))
    return model


def test_below_its_minimum_of_points_it_predicts_and_skips_nothing():
    x = np.array([1.0, 30.0, 20.0, 50, 12.0, 50])  # far heavier than anything it saw: hopeless
    model = _fitted(budget=1e9, points=FeasibilityModel.min_points - 1)
    assert model.predict(x) is None and not model.clearly_infeasible(x)
    model.add(x, _true(x))  # the min_points-th measurement: now it judges
    assert model.predict(x) is not None and model.clearly_infeasible(x)


def test_exact_log_linear_data_is_predicted_within_one_percent():
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
    """A prediction 30 % under the budget is no skip on 8 points (2 degrees of freedom: the
    Student-t quantile is ~19 instead of 3) but is one on 40; and on 40 points a candidate far
    outside everything measured gets a wider margin than one among them."""
    rng = np.random.default_rng(3)
    x = _x(rng)
    few, many = _fitted(budget=1.0, points=8), _fitted(budget=1.0, points=40)
    assert not replace(few, budget=few.predict(x) / 0.7).clearly_infeasible(x)
    assert replace(many, budget=many.predict(x) / 0.7).clearly_infeasible(x)
    far = x + np.array([0.0, 8.0, 6.0, 30, 6.0, 30])
    assert many._fit.margin(far[1:], 3.0) > 2 * many._fit.margin(x[1:], 3.0)
