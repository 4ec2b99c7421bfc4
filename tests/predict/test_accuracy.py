"""Accuracy predictor: held-out ridge and the fidelity studies' stored scores."""

from pathlib import Path

import numpy as np
import pytest

from effvit_nas.arch.space import load_space
from effvit_nas.predict.accuracy import RidgeAccuracy, ScoredArchs, candidates, load_scored, rank_candidates, ridge_loo
from effvit_nas.predict.calibration import space_sample

DB = Path(__file__).resolve().parents[2] / "results" / "fidelity_fashion.db"
STUDIES = ["fidelity-efficientvit64-fashion-mnist-M0pm25pct-s0", "fidelity-efficientvit64-fashion-mnist-all-s0"]


def test_ridge_loo_predicts_a_linear_target_held_out():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.05, 30)
    pred = ridge_loo(X, y, alpha=0.01)
    assert np.corrcoef(pred, y)[0, 1] > 0.99
    noise = ridge_loo(rng.normal(size=(30, 3)), y, alpha=0.01)  # unrelated columns: no skill held out
    assert np.corrcoef(noise, y)[0, 1] < 0.5


def test_candidates_rank_a_known_signal_first():
    configs = tuple(space_sample(load_space("tiny"), 16, 0))
    rng = np.random.default_rng(1)
    truth = rng.normal(size=16)
    data = ScoredArchs(("s",), configs, ("s",) * 16, truth, {"good": truth + rng.normal(0, 0.01, 16), "bad": rng.normal(size=16)})
    ranked = [name for name, _ in rank_candidates(candidates(data), truth, resamples=50)]
    assert ranked[0] in ("proxy:good", "ridge:features+good") and ranked[-1] in ("proxy:bad", "ridge:features+bad", "ridge:features")
    fitted = RidgeAccuracy.fit(data, "good")
    assert np.corrcoef(fitted.predict(configs, data.proxies["good"]), truth)[0, 1] > 0.9


@pytest.mark.skipif(not DB.exists(), reason="results/fidelity_fashion.db not in this checkout")
def test_fidelity_studies_load_with_complete_references():
    data = load_scored(f"sqlite:///{DB}", STUDIES)
    assert len(data.configs) == 24 and set(data.study_of) == set(STUDIES)
    assert np.all((data.reference > 0.5) & (data.reference < 1))
    assert {"macs", "params", "train@50"} <= set(data.proxies)
    assert all(len(v) == 24 for v in data.proxies.values())
