"""`profile` and `predict`: bad input ends in one line and exit 2 (a real small profile, on the
calibration a predicted search stored: test_specialise.py)."""

import pytest

from effvit_nas.predict.store import PredictorStore
from tests.support import run_main


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["profile", "--device", "tpu9000x", "--space", "tiny"], "tpu9000x"),
        (["profile", "--device", "foo", "--space", "tiny"], "unknown device 'foo'"),
        (["profile", "--space", "no-such-space"], "no-such-space"),
        (["profile", "--space", "tiny", "--metric", "speed"], "'speed' is not one of"),
        (["profile", "--space", "tiny", "--anchor", "M9"], "--anchor 'M9'"),
        (["profile", "--space", "tiny", "--feature-set", "nope"], "--feature-set 'nope' is unknown"),
        (["profile", "--space", "tiny", "--seed", "-5"], "--seed"),
        (["profile", "--space", "tiny", "--seed", str(2**31)], "--seed"),
        (["predict", "M0", "--metric", "latency"], "no profile to predict from"),
        (["predict", "M9"], "M9"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, args, says):
    r = run_main(capsys, *args, "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and says in r.stderr
    assert not (tmp_path / "s.db").exists()  # refused before the store was created


def test_profile_help_names_every_feature_set(capsys):
    from effvit_nas.predict.features import BEST, FEATURE_SETS

    r = run_main(capsys, "profile", "--help")
    assert r.returncode == 0 and all(name in "".join(r.stdout.split()) for name in [*FEATURE_SETS, BEST])  # click wraps at hyphens


def test_predict_without_a_profile_names_profile(capsys, tmp_path):
    missing = run_main(capsys, "predict", "M0", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and "effvit-nas profile --device cpu" in missing.stderr and missing.stderr.count("\n") == 1
    url = f"sqlite:///{tmp_path / 'other.db'}"
    PredictorStore(url).put("another-device", "p", "throughput", "tiny", {})
    r = run_main(capsys, "predict", "M0", "--space", "tiny", "--storage", url)
    assert r.returncode == 2 and "no profile for space 'tiny'" in r.stderr and "effvit-nas profile" in r.stderr
