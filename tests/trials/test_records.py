"""Reading a study's targets and a trial's figure on each: the several-target form of
CONTRACT.md and the one-target form every study stored before it has."""

import optuna
import pytest

from effvit_nas.trials.records import Attr, TargetFigure, TrialRecord, study_targets

BENCH = {"batch": 16, "threads": 1, "precision": "fp32", "backend": "trace"}  # a bench stored before "metric" existed


def test_a_study_without_targets_has_one_from_its_old_keys():
    (t,) = study_targets({"device": "cpu", "budget": 1200.0, "bench": BENCH, "budget_spec": "1.5xM0", "budget_reference": 800.0})
    assert (t.spec, t.name, t.metric, t.budget, t.budget_reference) == ("cpu/trace:1.5xM0", "cpu/trace", "throughput", 1200.0, 800.0)
    assert t.budget_text() == ">= 1,200 img/s" and t.text(812.4) == "812 img/s"
    (lat,) = study_targets({"device": "cpu", "budget": 250.0, "bench": {**BENCH, "batch": 1, "metric": "latency"}})
    assert (lat.spec, lat.metric, lat.unit) == ("cpu/trace:4ms", "latency", "ms")
    assert lat.budget_text() == "<= 4 ms p50" and lat.text(400.0) == "2.50 ms" and lat.shown(400.0) == pytest.approx(2.5)


def test_a_study_with_targets_lists_them_in_order():
    stored = [
        {"spec": "cpu/trace:2xM0", "device": "cpu", "backend": "trace", "metric": "throughput", "budget": 900.0, "bench": BENCH},
        {"spec": "cpu/openvino:4ms", "device": "cpu", "backend": "openvino", "metric": "latency", "budget": 250.0, "bench": BENCH},
    ]
    targets = study_targets({"device": "cpu", "budget": 900.0, "bench": BENCH, "targets": stored})
    assert [(t.spec, t.metric, t.budget) for t in targets] == [
        ("cpu/trace:2xM0", "throughput", 900.0),
        ("cpu/openvino:4ms", "latency", 250.0),
    ]


def _trial(attrs: dict) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(values=[0.5, 800.0], user_attrs=attrs)


def test_a_one_target_trial_reads_its_figure_from_the_old_attributes():
    old = {Attr.THROUGHPUT: 800.0, Attr.THROUGHPUT_IQR: [790.0, 810.0], Attr.MEASURED: True, Attr.DEVICE_ID: "d1"}
    r = TrialRecord.of(_trial({str(k): v for k, v in old.items()}))
    assert (r.throughput, r.measured, r.device_id) == (800.0, True, "d1")  # as before targets existed
    assert r.targets == (TargetFigure(800.0, (790.0, 810.0), True, "d1"),) and r.measured_all


def test_a_several_target_trial_reads_every_figure():
    figures = [
        {"figure": 800.0, "iqr": [790.0, 810.0], "measured": True, "device_id": "d1", "p90_ms": None, "predicted": None},
        {"figure": 400.0, "iqr": None, "measured": False, "device_id": None, "p90_ms": None, "predicted": 380.0},
    ]
    r = TrialRecord.of(_trial({"throughput": 800.0, "measured": True, "targets": figures}))
    assert r.targets[1] == TargetFigure(400.0, None, False, None, None, 380.0)
    assert r.measured and not r.measured_all  # predicted on the second target: never in the Pareto set
