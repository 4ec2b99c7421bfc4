"""The search's decisions, without Ray or real timings: a fake measurer, a fake throughput
model and fake proxies drive the screener and the loop over a real SQLite study."""

import contextlib
import math
import os
import resource
import shutil
import signal
import subprocess
import time

import optuna
import pytest

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import Measurement
from effvit_nas.search.screening import Candidate, OutcomeKind, Planned, Screener, prediction_rank_correlation, with_proxy
from effvit_nas.trials.records import TrialRecord
from tests.support import FAKE_BUDGET as BUDGET
from tests.support import TINY, by_width, fake_measurement, fake_problem_options, fake_proxies


class FakeModel:
    """A throughput model whose verdict the test sets."""

    def __init__(self, infeasible: bool = False, predicted: float = 10.0):
        self.infeasible, self.predicted, self.added = infeasible, predicted, []

    def clearly_infeasible(self, x) -> bool:
        return self.infeasible

    def predict(self, x) -> float:
        return self.predicted

    def add(self, x, throughput: float) -> None:
        self.added.append(throughput)


class FakeMeasurer:
    def __init__(self, throughput: float | Exception):
        self.throughput, self.calls = throughput, []

    def __call__(self, config: ArchConfig) -> Measurement:
        self.calls.append(config.short_hash())
        if isinstance(self.throughput, BaseException):
            raise self.throughput
        return fake_measurement(config, self.throughput)


def candidate(config: ArchConfig = TINY) -> Candidate:
    return Candidate(config, params=100_000, macs=5_000_000)


class Measuring:
    """A screener and a measurer, deciding a candidate as the loop does: plan, measure if
    planned, complete."""

    def __init__(self, measure, model=None, previous=None, audit_every: int = 4):
        self.measure = measure
        self.screener = Screener(BUDGET, model or FakeModel(), previous or (lambda h: None), audit_every)
        self.counts = self.screener.counts

    def decide(self, c: Candidate):
        plan = self.screener.plan(c)
        if not isinstance(plan, Planned):
            return plan
        try:
            m = self.measure(c.config)
        except Exception as e:
            m = e
        return self.screener.complete(plan, m)


screener = Measuring


def test_within_budget_needs_the_proxy_and_the_proxy_completes_it():
    measure = FakeMeasurer(1500.0)
    out = screener(measure).decide(candidate())
    assert out.kind is OutcomeKind.NEEDS_PROXY and out.values is None and measure.calls == [TINY.short_hash()]
    assert out.constraint == pytest.approx((BUDGET - 1500) / BUDGET) and out.attrs["throughput"] == 1500.0
    done = with_proxy(out, {"value": 0.42, "proxy": "naswot", "seconds": 0.1})
    assert done.kind is OutcomeKind.COMPLETE and done.values == (0.42, 1500.0) and done.feasible
    assert "proxy_weights" not in done.attrs
    scored = with_proxy(out, {"value": 0.5, "proxy": "supernet:/sn", "seconds": 0.4, "details": {"weights_sha256": "3fcf503d0325"}})
    assert scored.attrs["proxy"] == "supernet:/sn" and scored.attrs["proxy_weights"] == "3fcf503d0325"  # which supernet scored it


def test_under_budget_is_final_without_the_proxy():
    out = screener(FakeMeasurer(400.0)).decide(candidate())
    assert out.kind is OutcomeKind.UNDER_BUDGET and out.values == (0.0, 400.0) and not out.feasible
    assert out.attrs["measured"] is True and "proxy skipped" in out.attrs["note"]


def test_a_repeated_architecture_reuses_the_earlier_result_without_measuring():
    earlier = TrialRecord(
        number=3,
        state="COMPLETE",
        values=(0.5, 1200.0),
        constraints={"throughput": -0.2},
        config=TINY.to_dict(),
        config_hash=TINY.short_hash(),
        params=1,
        macs=1,
        measured=True,
        throughput=1200.0,
        throughput_iqr=None,
        device_id="d",
        accuracy=0.5,
        proxy="naswot",
        proxy_seconds=0.1,
        predicted_infeasible=False,
        predicted_throughput=None,
        audit=False,
        note="",
        fail_reason="",
        preset=None,
        attrs={"measured": True, "throughput": 1200.0, "accuracy": 0.5, "proxy": "naswot"},
    )
    measure = FakeMeasurer(1.0)
    out = screener(measure, previous=lambda h: earlier if h == TINY.short_hash() else None).decide(candidate())
    assert out.kind is OutcomeKind.REUSED and out.values == (0.5, 1200.0) and out.feasible and measure.calls == []
    assert out.attrs["accuracy"] == 0.5 and "trial 3" in out.attrs["note"]


def test_predicted_infeasible_is_skipped_and_every_fourth_is_audited():
    measure, model = FakeMeasurer(300.0), FakeModel(infeasible=True, predicted=250.0)
    s = screener(measure, model)
    fates = [s.decide(candidate()).kind for _ in range(8)]
    assert fates == [OutcomeKind.PREDICTED_INFEASIBLE] * 3 + [OutcomeKind.UNDER_BUDGET] + [OutcomeKind.PREDICTED_INFEASIBLE] * 3 + [
        OutcomeKind.UNDER_BUDGET
    ]
    assert len(measure.calls) == 2 and model.added == [300.0, 300.0]
    assert (s.counts.skipped, s.counts.audited, s.counts.audit_correct) == (6, 2, 2)


def test_a_wrong_skip_is_caught_by_its_audit():
    """The model calls it infeasible, the audit measures it within budget: the audit is counted
    wrong and the candidate goes on to its proxy instead of being dropped."""
    s = screener(FakeMeasurer(5000.0), FakeModel(infeasible=True, predicted=250.0), audit_every=1)
    out = s.decide(candidate())
    assert out.kind is OutcomeKind.NEEDS_PROXY and out.attrs["audit"] is True and out.attrs["predicted_throughput"] == 250.0
    assert (s.counts.audited, s.counts.audit_correct) == (1, 0)


def test_skipped_candidates_carry_the_prediction_never_a_measurement():
    out = screener(FakeMeasurer(1.0), FakeModel(infeasible=True, predicted=250.0), audit_every=1000).decide(candidate())
    assert out.kind is OutcomeKind.PREDICTED_INFEASIBLE and out.values == (0.0, 250.0) and out.throughput is None
    assert out.attrs["measured"] is False and out.attrs["throughput"] is None and out.constraint > 0


class RayLikeError(Exception):
    """What Ray raises in the driver for an error in an actor: the original as ``cause``."""

    __module__ = "ray.exceptions"

    def __init__(self, cause: BaseException):
        super().__init__(f"ray wrapper\n{cause}")
        self.cause = cause


def test_a_failing_measurement_fails_the_candidate_with_the_root_cause():
    out = screener(FakeMeasurer(RayLikeError(MemoryError("out of memory in the actor")))).decide(candidate())
    assert out.kind is OutcomeKind.FAILED and out.attrs["fail_reason"] == "MemoryError: out of memory in the actor"


def test_a_user_error_stops_instead_of_failing_every_candidate():
    with pytest.raises(UserError, match="device"):
        screener(FakeMeasurer(UserError("device 'v100' is not available"))).decide(candidate())


# --- the loop over a real study, with fake measurement and proxies (no Ray) -----------------


def _truth(record: TrialRecord) -> float:
    """What :func:`by_width` says a stored trial's throughput is, measured or not."""
    return by_width(ArchConfig.from_dict(record.config)).throughput


def test_loop_finishes_every_trial_in_one_of_its_fates(tmp_path):
    from effvit_nas.search.loop import run_search

    scored = []

    def second_proxy_crashes(jobs):  # the crash branch runs whatever configs the sampler draws
        for job, result in zip(jobs, fake_proxies(jobs), strict=True):
            scored.append(job)
            yield ValueError("proxy crashed") if len(scored) == 2 else result

    problem, options = fake_problem_options(tmp_path, trials=8, workers=2)
    summary = run_search(problem, options, measure=by_width, run_proxies=second_proxy_crashes)
    study = optuna.load_study(study_name="fake", storage=options.storage)
    records = [TrialRecord.of(t) for t in study.get_trials()]
    assert summary.complete == 8 and sum(r.complete for r in records) == 8 and summary.failed >= 1
    assert 0 < summary.feasible < sum(r.complete and r.measured for r in records)  # both branches below run
    for r in records:
        if r.state == "FAIL":
            assert r.fail_reason == "ValueError: proxy crashed"
        elif r.feasible:
            assert r.accuracy == pytest.approx(math.log(sum(r.config["widths"]))) and r.throughput >= BUDGET
        else:
            assert r.accuracy is None and r.throughput < BUDGET and r.values[0] == 0.0
    assert summary.feasible == sum(r.feasible for r in records) and summary.failed == sum(r.state == "FAIL" for r in records)
    front = {p["number"] for p in summary.pareto}
    assert front and all(next(r for r in records if r.number == n).feasible for n in front)


def _sigterm_self():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises before this returns


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_fails_and_re_enqueues_the_unfinished_trials(tmp_path, stop):
    """Ctrl-C, or a real SIGTERM under the command line's handler (`kill`, a scheduler): the
    trials in flight (one measured and waiting for its proxy, one measuring) are failed and
    enqueued again, and the next run starts with them."""
    from effvit_nas.runtime import sigterm_interrupts
    from effvit_nas.search.loop import run_search

    calls = []

    def interrupted_third(config):
        calls.append(config)
        if len(calls) == 3:
            if stop == "sigterm":
                _sigterm_self()
            raise KeyboardInterrupt
        return by_width(config)

    problem, options = fake_problem_options(tmp_path, trials=6)
    with sigterm_interrupts():
        summary = run_search(problem, options, measure=interrupted_third, run_proxies=fake_proxies)
    study = optuna.load_study(study_name="fake", storage=options.storage)
    states = [t.state.name for t in study.get_trials()]
    assert summary.interrupted and states == ["COMPLETE", "FAIL", "FAIL", "WAITING", "WAITING"]
    assert all(t.user_attrs["fail_reason"].startswith("interrupted") for t in study.get_trials()[1:3])
    again = run_search(problem, options, measure=by_width, run_proxies=fake_proxies)  # resumes with the re-enqueued ones first
    trials = study.get_trials()
    assert again.complete == 6 and not again.interrupted
    assert [t.params for t in trials[3:5]] == [t.params for t in trials[1:3]]


def test_too_many_failures_stop_the_search_with_one_line(tmp_path):
    from effvit_nas.search.loop import run_search

    problem, options = fake_problem_options(tmp_path, trials=50, max_failures=3)
    with pytest.raises(UserError, match="stopping: 4 candidates failed"):
        run_search(problem, options, measure=FakeMeasurer(RuntimeError("broken")), run_proxies=fake_proxies)
    failed = optuna.load_study(study_name="fake", storage=options.storage).get_trials(states=[optuna.trial.TrialState.FAIL])
    assert len(failed) == 4 and all(t.user_attrs["fail_reason"] == "RuntimeError: broken" for t in failed)


def test_the_real_throughput_models_skips_are_checked_against_the_true_throughputs(tmp_path):
    """With the budget where about a third of the space meets it, so that a skip can be wrong:
    after 8 measurements the (real) throughput model skips candidates without measuring them,
    measures every second would-be skip anyway (an audit), and the stored trials say which.
    Each skip is right by the fake truth, and the audits counted correct are exactly those
    under budget. (Before the model's prediction interval, 3 sigma of a 2-dof fit skipped
    feasible candidates here.)"""
    from effvit_nas.search.loop import run_search

    problem, options = fake_problem_options(tmp_path, trials=24, audit_every=2)
    problem = problem.__class__(**{**problem.__dict__, "budget": 1.5 * BUDGET})
    measured = []
    summary = run_search(problem, options, measure=lambda c: measured.append(c) or by_width(c), run_proxies=fake_proxies)
    records = [TrialRecord.of(t) for t in optuna.load_study(study_name="fake", storage=options.storage).get_trials()]
    skipped, audited = [r for r in records if r.skipped], [r for r in records if r.audited]
    budget = problem.budget
    assert summary.complete == 24 and 0 < summary.feasible < 24
    assert len(skipped) == summary.skipped_predicted >= 1 and len(audited) == summary.audited >= 1
    assert len(measured) == 24 - len(skipped) - sum(r.note.startswith("same") for r in records)
    assert all(_truth(r) < budget for r in skipped)  # no feasible candidate dropped unmeasured
    assert all(r.number >= 8 and r.throughput is None and r.predicted_throughput < budget for r in skipped)
    assert summary.audit_correct == sum(_truth(r) < budget for r in audited)


def test_halved_candidates_record_their_steps_and_stay_off_the_front(tmp_path):
    """A proxy runner reporting some candidates stopped at a rung: each trial stores the steps
    behind its accuracy, the stopped ones are marked and never enter the Pareto set, even
    when their (lower-fidelity) accuracy would put them there."""
    from effvit_nas.search.loop import run_search
    from effvit_nas.trials.pareto import pareto_trials

    def halved(jobs):
        for j in jobs:
            stop = int(j.config.short_hash(), 16) % 2 == 0
            # a stopped candidate reports a high accuracy on purpose: fidelity must decide, not value
            value = 0.99 if stop else 0.5 + sum(j.config.widths) / 1e4
            steps = 3 if stop else 9
            yield {"value": value, "proxy": "train", "seconds": 0.0, "details": {"steps": steps, "stopped_early": stop, "rungs": {1: 0.2}}}

    problem, options = fake_problem_options(tmp_path, trials=10)
    run_search(problem, options, measure=lambda c: fake_measurement(c, 2 * BUDGET), run_proxies=halved)
    study = optuna.load_study(study_name="fake", storage=options.storage)
    records = [TrialRecord.of(t) for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert {r.attrs["proxy_steps"] for r in records} == {3, 9} and all(r.attrs["rungs"] == {"1": 0.2} for r in records)
    assert all(r.stopped == (r.attrs["proxy_steps"] == 3) for r in records)
    front = {t.number for t in pareto_trials(study)}
    assert front and not any(r.stopped for r in records if r.number in front)


def _measured_record(number: int, config_hash: str, predicted: float | None, throughput: float) -> TrialRecord:
    values = dict.fromkeys(TrialRecord.__dataclass_fields__)
    values.update(number=number, state="COMPLETE", constraints={}, config_hash=config_hash, measured=True, throughput=throughput)
    values.update(predicted_throughput=predicted, predicted_infeasible=False, audit=False, note="", fail_reason="", attrs={})
    return TrialRecord(**values)


def test_the_prediction_made_before_measuring_is_stored_with_the_measurement():
    out = screener(FakeMeasurer(1500.0), FakeModel(predicted=1234.0)).decide(candidate())
    assert out.attrs["predicted_throughput"] == 1234.0 and "predicted_infeasible" not in out.attrs

    class Unfitted(FakeModel):
        def predict(self, x):
            return None

    assert "predicted_throughput" not in screener(FakeMeasurer(1500.0), Unfitted()).decide(candidate()).attrs


def test_prediction_rank_correlation_counts_each_architecture_once():
    good = [_measured_record(i, f"h{i}", 100.0 * i, 90.0 * i + 5) for i in range(1, 6)]
    assert prediction_rank_correlation(good) == (pytest.approx(1.0), 5)
    reversed_ = [_measured_record(i, f"h{i}", 100.0 * (6 - i), 90.0 * i) for i in range(1, 6)]
    assert prediction_rank_correlation(reversed_) == (pytest.approx(-1.0), 5)
    repeat = _measured_record(9, "h1", 100.0, 90.0)  # a repeat of h1: not a second pair
    unpredicted = _measured_record(10, "h10", None, 50.0)  # measured before the model was fitted
    assert prediction_rank_correlation([*good, repeat, unpredicted]) == (pytest.approx(1.0), 5)
    assert prediction_rank_correlation(good[:2]) == (None, 2)


@contextlib.contextmanager
def _disk_full(db):
    """Writes past the file's size fail from ``fail()`` on (the process's file-size limit: what a
    full disk looks like to SQLite), until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    try:
        yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(db), hard))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@contextlib.contextmanager
def _read_only(db):
    """The file immutable from ``fail()`` on (root ignores chmod, not the immutable flag)."""
    probe = db.with_suffix(".probe")
    probe.touch()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode:
        pytest.skip("this file system or user cannot set the immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    try:
        yield lambda: subprocess.run(["chattr", "+i", str(db)], check=True)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


@pytest.mark.parametrize("failure", [_disk_full, _read_only], ids=["disk full", "read-only"])
def test_a_database_failing_mid_search_stops_it_with_one_line_and_keeps_what_was_stored(tmp_path, failure):
    """The study's SQLite file stops taking writes at the 6th measurement: the search stops with
    one StorageError instead of failing candidate after candidate, the trials completed before
    keep their values, and the same search resumes once the file is writable again."""
    from effvit_nas.measure.store import StorageError
    from effvit_nas.search.loop import run_search

    problem, options = fake_problem_options(tmp_path, trials=12)
    calls = []
    with failure(tmp_path / "f.db") as fail:

        def measure_then_fail(config):
            calls.append(config)
            if len(calls) == 6:
                fail()
            return by_width(config)

        with pytest.raises(StorageError, match=r"f\.db' failed while writing: .*(disk|full|readonly).* run the same command again"):
            run_search(problem, options, measure=measure_then_fail, run_proxies=fake_proxies)
    before = {t.number: (t.state.name, t.values) for t in optuna.load_study(study_name="fake", storage=options.storage).get_trials()}
    # trials finish while later ones are measured: at least two before the 6th measurement
    assert sum(state == "COMPLETE" for state, _ in before.values()) >= 2
    assert not any(state == "FAIL" for state, _ in before.values())  # no candidate blamed for the database

    summary = run_search(problem, options, measure=by_width, run_proxies=fake_proxies)
    after = {t.number: (t.state.name, t.values) for t in optuna.load_study(study_name="fake", storage=options.storage).get_trials()}
    assert summary.complete == 12
    assert all(after[n] == v for n, v in before.items() if v[0] == "COMPLETE")


def test_trials_of_an_architecture_in_flight_wait_for_it_and_one_measures_again_if_it_failed(tmp_path):
    """Every trial of a one-point space has the architecture of the first: the trials in flight
    beside it wait for it instead of being measured too. Its measurement fails, so the next
    one is measured once and the rest reuse that result (was: each waiting trial measured)."""
    from dataclasses import replace

    from effvit_nas.search.loop import run_search
    from tests.support import ONE_POINT_SPACE

    space = tmp_path / "one.yaml"
    space.write_text(ONE_POINT_SPACE)
    problem, options = fake_problem_options(tmp_path, trials=4, workers=3)  # 4 trials in flight at once
    calls = []

    def first_fails(config):
        calls.append(config.short_hash())
        if len(calls) == 1:
            raise RuntimeError("the first measurement breaks")
        return fake_measurement(config, 2 * BUDGET)

    summary = run_search(replace(problem, space=str(space)), options, measure=first_fails, run_proxies=fake_proxies)
    assert (summary.complete, summary.failed, len(calls)) == (4, 1, 2)
    notes = [t.user_attrs.get("note", "") for t in optuna.load_study(study_name="fake", storage=options.storage).trials]
    assert sum("result reused" in n for n in notes) == 3


def test_several_targets_each_have_a_model_a_figure_and_a_constraint():
    """Two targets: the second's model alone calls the candidate infeasible, so it is skipped
    with each target's prediction as its figure; measured, it is judged on both targets, and
    under the second's budget it skips the proxy whatever the first says."""
    first, second = FakeModel(predicted=5000.0), FakeModel(infeasible=True, predicted=200.0)
    s = Screener(BUDGET, first, lambda h: None, audit_every=1000, more=((400.0, second),))
    out = s.plan(candidate())
    assert out.kind is OutcomeKind.PREDICTED_INFEASIBLE and out.values == (0.0, 5000.0, 200.0)
    assert out.constraint < 0 < out.more_constraints[0] and not out.feasible
    assert [t["predicted"] for t in out.attrs["targets"]] == [5000.0, 200.0] and not out.attrs["targets"][1]["measured"]

    second.infeasible = False
    plan = s.plan(candidate())
    ms = (fake_measurement(TINY, 1500.0), fake_measurement(TINY, 300.0))
    out = s.complete(plan, ms)
    assert out.kind is OutcomeKind.UNDER_BUDGET and out.values == (0.0, 1500.0, 300.0) and out.note == "under budget on target 2"
    assert (first.added, second.added) == ([1500.0], [300.0])  # each target's model learns its own figure
    assert out.more_constraints == ((400.0 - 300.0) / 400.0,) and out.attrs["throughput"] == 1500.0
    done = with_proxy(s.complete(plan, (ms[0], fake_measurement(TINY, 800.0))), {"value": 0.5, "proxy": "macs", "seconds": 0.1})
    assert done.values == (0.5, 1500.0, 800.0) and done.feasible
