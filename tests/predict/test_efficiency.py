"""Efficiency predictor: features of the presets, the fit on data with known costs, the
calibration set, the noise ceiling and the stored record."""

import numpy as np
import pytest

from effvit_nas.arch.config import PRESETS
from effvit_nas.arch.space import load_space
from effvit_nas.measure.throughput_model import features as screen_features
from effvit_nas.model.cost import model_cost
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import calibration_set, noise_ceiling, preset_configs, space_sample
from effvit_nas.predict.efficiency import EfficiencyPredictor, fit_efficiency
from effvit_nas.predict.features import FEATURE_SETS, arch_features, feature_matrix
from effvit_nas.predict.store import PredictorStore


@pytest.mark.parametrize("name", list(PRESETS))
def test_features_of_presets_add_up(name):
    cfg = PRESETS[name].replace(img_size=64, num_classes=10)
    f = arch_features(cfg)
    cost = model_cost(cfg)
    assert f["macs"] == cost.macs
    assert f["params"] == cost.params
    assert f["macs"] == sum(f[f"macs_{k}"] for k in ("conv", "dwconv", "attention", "linear"))
    assert f["head_calls"] == screen_features(cfg, cost.params, cost.macs)[3]
    # 3 kernels per attention head, in sequence, in every block: at least that many calls
    assert f["calls"] > 3 * f["head_calls"]
    assert all(f[f"act_s{i}"] > 0 and f[f"macs_s{i}"] > 0 for i in range(3))
    assert sum(f[f"macs_s{i}"] for i in range(3)) < f["macs"]  # the stem and classifier are outside the stages


def test_features_grow_with_the_presets():
    macs = [arch_features(p.replace(img_size=64))["macs"] for p in PRESETS.values()]
    assert macs == sorted(macs)
    at224 = arch_features(PRESETS["M0"])
    assert at224["macs_attention"] > arch_features(PRESETS["M0"].replace(img_size=64))["macs_attention"]


def _synthetic(n: int, coef: dict[str, float], noise: float, seed: int):
    """Real configs' features (by arithmetic: equal to the built models', test_analytic) and
    times made from known per-unit costs with relative noise."""
    space = load_space("efficientvit64")
    feats = [analytic_features(c) for c in space_sample(space, n, seed)]
    rng = np.random.default_rng(seed)
    time = np.array([sum(v * f[k] for k, v in coef.items()) for f in feats]) * np.exp(rng.normal(0, noise, n))
    return feats, 1.0 / time


def test_fit_recovers_known_costs():
    coef = {"const": 2e-4, "macs": 3e-11, "params": 5e-11, "head_calls": 2e-5}
    feats, thr = _synthetic(40, coef, 0.01, 0)
    predictor, held = fit_efficiency(feats, thr, "cost-terms", folds=5)
    for k, v in predictor.terms().items():
        assert v == pytest.approx(coef[k], rel=0.15), k
    assert held.within_5 >= 0.9 and held.spearman > 0.95
    # a fresh architecture's true time lies in its interval
    test_feats, test_thr = _synthetic(30, coef, 0.0, 1)
    inside = [predictor.predict(f).low <= t <= predictor.predict(f).high for f, t in zip(test_feats, test_thr, strict=True)]
    assert np.mean(inside) >= 0.8


def test_held_out_figures_see_the_noise():
    coef = {"const": 1e-4, "macs_conv": 2e-11, "macs_dwconv": 4e-10, "macs_attention": 1e-10, "calls": 2e-6}
    quiet = fit_efficiency(*_synthetic(40, coef, 0.01, 2), "op-types")[1]
    noisy = fit_efficiency(*_synthetic(40, coef, 0.15, 2), "op-types")[1]
    assert quiet.within_10 == 1.0
    assert noisy.within_10 < 0.8 and noisy.median_abs_error > quiet.median_abs_error


def test_a_cost_per_depthwise_tap_needs_the_taps_feature():
    # times with a fixed cost per depthwise kernel position (what large Q kernels cost on a CPU
    # at batch 16): only the set that has the feature predicts them
    coef = {"const": 1e-4, "macs_conv": 2e-11, "macs_dwconv": 4e-10, "calls": 2e-6, "dw_taps": 4e-7}
    feats, thr = _synthetic(40, coef, 0.005, 5)
    assert min(f["dw_taps"] for f in feats) > 0
    without = fit_efficiency(feats, thr, "op-types")[1]
    taps, held = fit_efficiency(feats, thr, "op-types-taps")
    assert held.median_abs_error < without.median_abs_error / 2
    assert taps.terms()["dw_taps"] == pytest.approx(coef["dw_taps"], rel=0.25)


def test_every_feature_set_fits():
    feats, thr = _synthetic(20, {"const": 1e-4, "macs": 3e-11}, 0.02, 3)
    for name in FEATURE_SETS:
        assert feature_matrix(feats, name).shape == (20, len(FEATURE_SETS[name]))
        p, held = fit_efficiency(feats, thr, name, folds=4)
        assert held.n == 20 and held.within_10 > 0.8
        again = EfficiencyPredictor.from_dict(p.to_dict())
        assert again.predict(feats[0]) == p.predict(feats[0])


def test_calibration_set_is_presets_then_distinct_space_points():
    space = load_space("tiny")
    items = calibration_set(space, 10, seed=0)
    labels = [label for label, _ in items]
    assert labels[:6] == list(PRESETS)
    assert all(c.img_size == 64 and c.num_classes == 10 for _, c in items)
    sampled = [c for _, c in items[6:]]
    assert len(sampled) == 10 and len({c.short_hash() for c in sampled}) == 10
    assert all(space.contains(c) for c in sampled)
    assert [c.short_hash() for c in sampled] == [c.short_hash() for _, c in calibration_set(space, 10, seed=0)[6:]]
    assert [c.short_hash() for c in sampled] != [c.short_hash() for _, c in calibration_set(space, 10, seed=1)[6:]]
    assert set(preset_configs(space)) == set(PRESETS)


def test_space_sample_covers_every_choice():
    space = load_space("efficientvit64")
    sample = space_sample(space, 32, seed=0)
    assert {c.depths[2] for c in sample} == {1, 2, 3, 4, 5}
    assert {c.ffn_ratios[0] for c in sample} == set(space.ffn_ratios[0])


def test_noise_ceiling():
    thr = np.linspace(100, 1000, 40)
    exact = noise_ceiling((("a", 500.0, 500.0),), thr)
    assert exact.sd == 0 and exact.within_5 == 1.0 and exact.spearman == pytest.approx(1.0)
    spread = noise_ceiling((("a", 500.0, 550.0), ("b", 300.0, 270.0)), thr)
    assert 0.05 < spread.sd < 0.1 and spread.within_5 < 0.7 < spread.within_10 < 1.0
    assert noise_ceiling((), thr) is None


def test_store_keeps_one_record_per_target(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = PredictorStore(url)
    store.put("dev", "proto", "throughput", "tiny", {"n": 1})
    store.put("dev", "proto", "throughput", "tiny", {"n": 2})
    store.put("dev", "proto", "throughput", "efficientvit64", {"n": 3})
    assert store.find("dev", "proto", "throughput", "tiny") == [{"n": 2}]
    assert [r["n"] for r in store.find("dev", "proto", "throughput")] == [3, 2]
    assert store.find("other", "proto", "throughput") == []


def test_held_out_subset_judges_only_the_kept_points():
    coef = {"const": 2e-4, "macs": 3e-11, "params": 5e-11, "head_calls": 2e-5}
    feats, thr = _synthetic(20, coef, 0.05, 4)
    _, held = fit_efficiency(feats, thr, "cost-terms", folds=5)
    keep = np.arange(20) < 12
    part = held.subset(thr, keep)
    assert part.n == 12 and part.residuals == held.residuals[:12]
    err = np.abs(np.exp(np.asarray(held.residuals[:12])) - 1)
    assert part.within_10 == pytest.approx(np.mean(err <= 0.10))


def test_best_feature_set_is_most_within_10_then_spearman_then_the_earlier():
    from effvit_nas.predict.features import choose

    assert choose({"a": (0.9, 0.99), "b": (0.95, 0.90), "c": (0.95, 0.93)}) == "c"
    assert choose({"a": (0.95, 0.93), "b": (0.95, 0.93)}) == "a"
