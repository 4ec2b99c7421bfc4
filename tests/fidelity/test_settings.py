import pytest

from effvit_nas.data import DataConfig
from effvit_nas.errors import SettingError
from effvit_nas.fidelity.settings import Band, FidelitySettings, ProxySpec


@pytest.mark.parametrize("text, budget, tol", [("M0±20%", "M0", 0.2), ("1.5xM0 +- 15 %", "1.5xM0", 0.15), ("2.5k+/-10%", "2.5k", 0.1)])
def test_band_forms(text, budget, tol):
    band = Band.parse(text)
    assert (band.budget, band.tolerance) == (budget, pytest.approx(tol))


@pytest.mark.parametrize("text", ["M0", "M9±20%", "fast±20%", "M0±0%", "M0±150%", "M0±x%"])
def test_bad_bands_name_the_setting(text):
    with pytest.raises(SettingError) as e:
        Band.parse(text)
    assert e.value.setting in ("FidelitySettings.band", "SearchProblem.budget")


def test_proxy_specs():
    assert ProxySpec.parse("train@50") == ProxySpec("train", 50) and str(ProxySpec.parse("dss")) == "dss"
    for bad in ("train", "train@0", "naswot@10", "nope"):
        with pytest.raises(SettingError):
            ProxySpec.parse(bad)


def test_reference_steps_from_epochs_and_seeds():
    s = FidelitySettings(data=DataConfig("synthetic"), reference_epochs=5, seed=3)
    run = s.reference_run(train_images=1000, seed_index=1)
    assert run.steps == 79 and run.seed == 4  # ceil(5 * 1000 / 64)
    assert FidelitySettings(reference_steps=7).reference_run(10**6, 0).steps == 7
    assert s.reference_data().val_per_class is None  # every held-out image


def test_identity_leaves_out_what_may_grow():
    a = FidelitySettings(archs=4, seeds=1, proxies=(ProxySpec("dss"),))
    b = FidelitySettings(archs=20, seeds=3)
    assert a.identity() == b.identity()
    assert a.identity() != FidelitySettings(reference_epochs=6).identity()
    with pytest.raises(SettingError):
        FidelitySettings(archs=2)
