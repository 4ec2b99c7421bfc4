"""`profile` and `predict`: bad input ends in one line and exit 2; a real small profile."""

import json

import pytest

from effvit_nas.predict.store import PredictorStore
from tests.support import run_main

FAST = ["--warmup", "0.1", "--duration", "0.3", "--window", "0.05"]


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


@pytest.mark.slow
def test_profile_tiny_then_predict(capsys, tmp_path, local_ray):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_main(capsys, "profile", "--space", "tiny", "--archs", "6", "--repeats", "1", "--device", "cpu", *FAST, "--storage", url)
    assert r.returncode == 0, r.stderr
    assert "12 architectures (M0..M5 + 6 sampled), 13 measured now (1 of them repeats), 0 reused" in r.stdout
    assert "held out (5-fold, 12 archs" in r.stdout and "of them the 6 sampled from the space" in r.stdout
    assert "noise ceiling (1 repeats" in r.stdout
    again = run_main(capsys, "profile", "--space", "tiny", "--archs", "6", "--repeats", "0", *FAST, "--storage", url, "--json")
    record = json.loads(again.stdout)
    assert record["calibration"]["measured_now"] == 0 and record["calibration"]["reused"] == 12  # every figure reused
    assert 0 <= record["held_out"]["within_10"] <= 1 and record["noise"] is None
    # the default feature set is the best held out: no other set has more within ±10 %
    assert record["feature_set_chosen"] != "given"
    assert all(o["within_10"] <= record["held_out"]["within_10"] for o in record["other_feature_sets"].values())
    p = run_main(capsys, "predict", "M0", "M1", "--img-size", "64", *FAST, "--storage", url, "--json")
    rows = json.loads(p.stdout)
    assert [r["name"] for r in rows] == ["M0", "M1"] and all(r["low"] <= r["throughput"] <= r["high"] for r in rows)
    measured = dict(zip(record["calibration"]["labels"], record["calibration"]["throughput"], strict=True))
    # M0 and M1 were in the fit: the prediction is near what was measured
    assert all(abs(r["throughput"] / measured[r["name"]] - 1) < 0.5 for r in rows)
    other = run_main(capsys, "predict", "M0", "--storage", url)  # another protocol (default timings): no profile
    assert other.returncode == 2 and "effvit-nas profile" in other.stderr
