"""The predicted search: NSGA-II over the predictors, its front and shortlist."""

import math

import numpy as np

from effvit_nas.arch.config import PRESETS
from effvit_nas.arch.space import load_space
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import space_sample
from effvit_nas.predict.efficiency import Prediction, fit_efficiency
from effvit_nas.predict.search import Candidate, by_gain, predicted_search, shortlist


def test_predicted_front_is_non_dominated_and_shortlist_widens_it():
    space = load_space("tiny")
    feats = [analytic_features(c) for c in space_sample(space, 16, 0)]
    rng = np.random.default_rng(0)
    time = np.array([1e-4 + 3e-11 * f["macs"] + 2e-6 * f["calls"] for f in feats]) * np.exp(rng.normal(0, 0.03, 16))
    efficiency, _ = fit_efficiency(feats, 1 / time, "op-types", folds=4)
    accuracy = lambda c: math.log(analytic_features(c)["params"])  # noqa: E731  a real proxy (params), cheap
    found = predicted_search(space, efficiency, accuracy, trials=40, seed=0, population=10)
    assert 1 <= len(found) <= 40 and all(space.contains(c.config) for c in found)
    front = [c for c in found if c.on_front]
    assert front
    for f in front:
        assert not any(
            o.throughput.throughput >= f.throughput.throughput
            and o.accuracy >= f.accuracy
            and (o.throughput.throughput > f.throughput.throughput or o.accuracy > f.accuracy)
            for o in found
        )
    tight, wide = shortlist(found, 0.0), shortlist(found, 1.0)
    assert front == tight[: len(front)] and len(front) <= len(tight) <= len(wide) <= len(found)


def test_search_over_several_studies_carries_the_parents(monkeypatch):
    """Studies of a few generations each (Optuna's GA bookkeeping is quadratic in one study's
    trials): the next study starts from the previous one's parent population, so the front
    first study of a longer search is the one-study search itself."""
    import effvit_nas.predict.search as search

    space = load_space("efficientvit64")
    feats = [analytic_features(c) for c in space_sample(space, 20, 0)]
    time = np.array([1e-4 + 3e-11 * f["macs"] + 2e-6 * f["calls"] for f in feats])
    efficiency, _ = fit_efficiency(feats, 1 / time, "op-types", folds=4)
    accuracy = lambda c: math.log(analytic_features(c)["params"])  # noqa: E731
    monkeypatch.setattr(search, "GENERATIONS_PER_STUDY", 2)
    enqueued: list[int] = []
    import optuna

    original = optuna.study.Study.enqueue_trial
    monkeypatch.setattr(optuna.study.Study, "enqueue_trial", lambda self, p, *a, **k: (enqueued.append(1), original(self, p, *a, **k))[1])
    one = predicted_search(space, efficiency, accuracy, trials=16, seed=0, population=8)  # one study
    assert not enqueued
    many = predicted_search(space, efficiency, accuracy, trials=64, seed=0, population=8)  # four studies
    assert len(enqueued) == 3 * 8  # each later study seeded with a full parent population
    assert {c.config.short_hash() for c in one} < {c.config.short_hash() for c in many}  # the same first study, then more


def _candidate(accuracy: float, throughput: float) -> Candidate:
    return Candidate(PRESETS["M0"], Prediction(throughput, throughput * 0.9, throughput * 1.1), accuracy, True)


def test_by_gain_takes_the_largest_predicted_area_first_and_keeps_the_rest_in_order():
    """Budget 100 img/s; measured (accuracy 1, 200 img/s). Against the reference (lowest
    accuracy 1, 100 img/s) that point adds no area, so the gains are plain boxes: (3, 150)
    adds 2 x 50 = 100, (2, 400) adds 1 x 300 = 300, (1.5, 120) adds little and (5, 90) is
    below the budget. After (2, 400) is taken, (3, 150) still adds (3 - 2) x 50 = 50, and
    (1.5, 120) nothing: it keeps its place with (5, 90) after the chosen ones."""
    small, slow, wide, fast = _candidate(1.5, 120), _candidate(5, 90), _candidate(3, 150), _candidate(2, 400)
    order = by_gain([small, slow, wide, fast], [(1.0, 200.0)], budget=100.0, n=3)
    assert order == [fast, wide, small, slow]
    assert by_gain([small, slow, wide, fast], [(1.0, 200.0)], budget=100.0, n=1) == [fast, small, slow, wide]
    assert by_gain([], [], budget=100.0, n=4) == []
