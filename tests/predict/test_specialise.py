"""`search --strategy predicted`: bad input is one line; a real run on the tiny space
calibrates, keeps predicted and measured values side by side and builds its fronts from
measurements only, one study per budget; `profile` and `predict` on what it stored."""

import optuna
import pytest

from effvit_nas.arch.config import load_config
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.efficiency import EfficiencyPredictor
from effvit_nas.predict.store import PredictorStore
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.trials.records import Attr
from tests.support import TINY_SEARCH, run_main


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--budget", "M0,M1"], "needs --strategy predicted"),
        (["--budget", "M0,,M1", "--strategy", "predicted"], "distinct budgets"),
        (["--budget", "M0", "--strategy", "predicted", "--proxy", "naswot"], "supports --proxy macs or params"),
        (["--budget", "M0", "--strategy", "predicted", "--no-anchor"], "--no-anchor is not supported"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, args, says):
    r = run_main(capsys, "search", *args, "--trials", "2", "--space", "tiny", "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and says in r.stderr
    assert not (tmp_path / "s.db").exists()


FAST = ["--warmup", "0.1", "--duration", "0.3", "--window", "0.05"]  # TINY_SEARCH's timing: the same protocol


@pytest.mark.slow
def test_predicted_search_two_budgets_from_one_calibration_then_profile_and_predict(capsys, tmp_path, local_ray):
    """The predicted search calibrates (no profile stored), runs one study per budget and
    refits; `profile` then reuses the calibration's stored figures (measuring only its noise
    ceiling's repeat) and `predict` reads the profile. One test, because a calibration is the
    costly part of both (a minute on a busy 2-core machine)."""
    import json

    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["search", "--strategy", "predicted", "--budget", "M0,M1", "--study", "t", "--trials", "2", "--candidates", "200"]
    r = run_main(capsys, *args, "--calibration-archs", "2", *TINY_SEARCH, "--storage", url)
    assert r.returncode == 0, r.stderr
    assert "calibrating one first" in r.stderr and "round 1: NSGA-II on the predictors, 200 candidates" in r.stdout
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    assert names == ["t-M0", "t-M1"]  # one study per budget
    for name in names:
        study = optuna.load_study(study_name=name, storage=url)
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(done) == 2
        for t in done:
            ua = t.user_attrs
            predicted, low, high = ua[Attr.PREDICTOR_THROUGHPUT]
            assert low <= predicted <= high and ua[Attr.MEASURED] is True
            # the values are the measurement and the proxy, never the prediction
            assert t.values == [ua[Attr.ACCURACY], ua[Attr.THROUGHPUT]] and ua[Attr.THROUGHPUT] != predicted
            assert ua[Attr.PREDICTOR_ACCURACY] == ua[Attr.ACCURACY]  # macs: predicted exactly
        assert pareto_trials(study) and all(t.values[1] == t.user_attrs[Attr.THROUGHPUT] for t in pareto_trials(study))
    ((device_id, key),) = _predictor_keys(url)
    (record,) = PredictorStore(url).find(device_id, key, "throughput", "tiny")
    assert record["refit"]["from_searches"] >= 2  # refitted on the studies' measurements
    # one scale for every budget and the calibration: M1's budget is M1's figure anchored to M0,
    # the very figure the calibration fitted on (not M1's own anchor figure, measured apart)
    calibrated = dict(zip(record["calibration"]["labels"], record["calibration"]["throughput"], strict=True))
    m1 = optuna.load_study(study_name="t-M1", storage=url).user_attrs["effvit"]
    assert m1["budget_reference"] == pytest.approx(calibrated["M1"], rel=1e-9) and m1["budget_spec"] == "1xM1"

    # `profile` of the same target and protocol: the search's calibration set (seed 0, 2 sampled)
    # is stored, so only the noise ceiling's repeat is timed
    r = run_main(capsys, "profile", "--space", "tiny", "--archs", "2", "--repeats", "1", "--device", "cpu", *FAST, "--storage", url)
    assert r.returncode == 0, r.stderr
    assert "8 architectures (M0..M5 + 2 sampled), 1 measured now (1 of them repeats), 8 reused" in r.stdout
    assert "held out (5-fold, 8 archs" in r.stdout and "of them the 2 sampled from the space" in r.stdout
    assert "noise ceiling (1 repeats" in r.stdout
    again = run_main(capsys, "profile", "--space", "tiny", "--archs", "2", "--repeats", "0", *FAST, "--storage", url, "--json")
    profile = json.loads(again.stdout)
    assert profile["calibration"]["measured_now"] == 0 and profile["calibration"]["reused"] == 8  # every figure reused
    assert 0 <= profile["held_out"]["within_10"] <= 1 and profile["noise"] is None
    # the default feature set is the best held out: no other set has more within ±10 %
    assert profile["feature_set_chosen"] != "given"
    assert all(o["within_10"] <= profile["held_out"]["within_10"] for o in profile["other_feature_sets"].values())
    p = run_main(capsys, "predict", "M0", "M1", "--img-size", "64", *FAST, "--storage", url, "--json")
    rows = json.loads(p.stdout)
    assert [r["name"] for r in rows] == ["M0", "M1"] and all(r["low"] <= r["throughput"] <= r["high"] for r in rows)
    # `predict` uses the stored profile's fit on the config rebuilt at 64 px: the same figure as
    # the profile's predictor gives in this process. (Not compared with M0's measurement: one
    # 0.3 s timing beside another xdist worker can be an outlier the fit rightly does not follow.)
    predictor = EfficiencyPredictor.from_dict(profile["predictor"])
    for r, name in zip(rows, ["M0", "M1"], strict=True):
        expected = predictor.predict(analytic_features(load_config(name).replace(img_size=64)))
        assert r["throughput"] == pytest.approx(expected.throughput, rel=1e-9) and r["low"] == pytest.approx(expected.low, rel=1e-9)
    other = run_main(capsys, "predict", "M0", "--storage", url)  # another protocol (default timings): no profile
    assert other.returncode == 2 and "effvit-nas profile" in other.stderr

    # a profile on another scale (`profile --anchor none`) is refused, not mixed with anchored figures
    PredictorStore(url).put(device_id, key, "throughput", "tiny", {**profile, "anchor": None})
    r = run_main(capsys, *args, "--calibration-archs", "2", *TINY_SEARCH, "--storage", url)
    assert r.returncode == 2 and "plain (not anchored)" in r.stderr and "--anchor M0" in r.stderr


def _predictor_keys(url):
    from sqlalchemy import text

    with PredictorStore(url).engine.connect() as c:
        return list(c.execute(text("SELECT device_id, protocol_key FROM effvit_predictors")))


def test_a_stopped_round_leaves_nothing_queued(tmp_path):
    """Shortlisted trials a round did not reach (--timeout) are closed as PRUNED: a later run of
    the study, of either strategy, would otherwise measure them before anything it proposes."""
    import numpy as np

    from effvit_nas.arch.space import load_space
    from effvit_nas.predict.specialise import BudgetRun, drop_unmeasured
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem
    from effvit_nas.search.study import open_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    run = BudgetRun(SearchProblem(device="cpu", budget=1000.0, space="tiny"), RunOptions(study="t", storage=url, trials=4))
    study = open_study(run.problem, run.options).study
    space = load_space("tiny")
    params = [space.params_from_config(space.sample(np.random.default_rng(seed))) for seed in (1, 2, 3)]
    study.enqueue_trial(params[0])  # queued by something else first (e.g. --seed-presets)
    for p in params[1:]:
        study.enqueue_trial(p, user_attrs={str(Attr.PREDICTOR_ROUND): 1})
    assert drop_unmeasured(run) == 2
    states = [t.state.name for t in optuna.load_study(study_name="t", storage=url).trials]
    assert states == ["WAITING", "PRUNED", "PRUNED"]
