"""The analytic features equal the built model's, operator by operator type and stage."""

from effvit_nas.arch.config import PRESETS
from effvit_nas.arch.space import load_space
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.calibration import space_sample
from effvit_nas.predict.features import arch_features


def test_analytic_features_equal_the_built_models():
    # M0-M5 at 64 px (a window padded over odd maps) and 224 px (several windows), 10 classes,
    # and configs sampled from both spaces (other ratios, kernels, windows, depths)
    configs = [p.replace(img_size=s, num_classes=10) for p in PRESETS.values() for s in (64, 224)]
    configs += space_sample(load_space("efficientvit"), 4, 1) + space_sample(load_space("tiny"), 3, 0)
    configs += space_sample(load_space("efficientvit64"), 3, 2)  # the space the fit tests' synthetic data come from
    for cfg in configs:
        assert analytic_features(cfg) == arch_features(cfg), cfg.short_hash()
