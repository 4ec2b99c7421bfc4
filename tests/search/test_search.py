import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from effvit_nas.errors import SettingError, UserError
from effvit_nas.search.options import parse_duration
from effvit_nas.search.problem import parse_budget
from tests.support import ONE_POINT_SPACE, run_main, tiny_search_settings
from tests.support import TINY_SEARCH as SMALL

TINY_SEARCH = [*SMALL, "--steps", "8"]


@pytest.mark.parametrize(
    "text, value",
    [("10k-imgs/s", 10_000), ("10000img/s", 10_000), ("2.5k", 2_500), ("300-imgs/s", 300), ("1.5M", 1.5e6), (" 42 ", 42)],
)
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["fast", "10 kimgs", "-3k", "0", "10k-imgs/min", ""])
def test_bad_budgets(text):
    with pytest.raises(SettingError, match=r"^SearchProblem\.budget "):
        parse_budget(text)


def test_parse_duration():
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration("2h") == 7200 and parse_duration("5") == 5
    with pytest.raises(UserError):
        parse_duration("soon")


def _trials(db: str, study: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ? ORDER BY t.number",
            (study,),
        ).fetchall()


@pytest.fixture
def stale_cluster_file():
    """What `ray start` leaves behind when its cluster dies without `ray stop`: the address
    of a cluster that no longer answers, where Ray's default `ray.init()` would try to join."""
    from pathlib import Path

    path = Path("/tmp/ray/ray_current_cluster")
    if path.exists():
        pytest.skip("a Ray cluster started with `ray start` is recorded on this machine")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("127.0.0.1:1")
    yield
    path.unlink(missing_ok=True)


def _beating(db: str) -> bool:
    """Whether trials run and every one of them has a heartbeat (several are in flight)."""
    with sqlite3.connect(db) as c:
        running = c.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
        q = "SELECT COUNT(*) FROM trial_heartbeats h JOIN trials t ON t.trial_id = h.trial_id WHERE t.state = 'RUNNING'"
        return running > 0 and c.execute(q).fetchone()[0] == running


def _kill_once_a_trial_runs(p: subprocess.Popen, db, study: str) -> None:
    """SIGKILL ``p``'s process group once a trial is complete and the others run with their
    heartbeats recorded (a kill between Optuna's ask and the first beat, milliseconds apart,
    would leave a trial nothing can see die)."""
    deadline = time.time() + 240
    states: list = []
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                states = [s for _, s in _trials(str(db), study)]
            except sqlite3.OperationalError:
                continue
            if states.count("COMPLETE") >= 1 and _beating(str(db)):
                break
    assert "RUNNING" in states, f"never saw a running trial: {states}; {p.stderr.read()[-2000:] if p.poll() is not None else ''}"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def test_search_in_a_fresh_process_killed_resumed_and_shown(tmp_path, capsys, local_ray, stale_cluster_file):
    """A real search in a fresh process, with a budget relative to M0 (measured there, at the
    space's 64 px), SIGKILLed mid-trial; the same command here resumes with the stored budget,
    fails the killed trial by its stale heartbeat and runs only what is missing; `show` and
    `studies` read it back. The fresh process starts its own local Ray although a dead cluster
    is recorded on the machine, and Ray's own log lines stay off the user's terminal."""
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    args = ["search", "--budget", "0.3xM0", "--trials", "3", "--study", "e2e", "--storage", url, *TINY_SEARCH]
    p = subprocess.Popen(
        [sys.executable, "-m", "effvit_nas.cli", *args, "--quiet"],  # quiet: no progress to fill the pipes while it runs
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _kill_once_a_trial_runs(p, db, "e2e")
    stderr = p.stderr.read()
    assert "Token authentication" not in stderr and "ray_current_cluster" not in stderr, stderr
    with sqlite3.connect(db) as c:  # its last beat an hour ago: stale past any grace period, no waiting
        c.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")

    budget = json.loads(run_main(capsys, "studies", "--storage", url, "--json").stdout)[0]["budget"]
    r = run_main(capsys, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"budget 0.3xM0 = {budget:,.0f} img/s" in r.stdout and budget > 0
    states = [s for _, s in _trials(str(db), "e2e")]
    assert states.count("COMPLETE") == 3 and "RUNNING" not in states and states.count("FAIL") >= 1

    rows = json.loads(run_main(capsys, "show", "--study", "e2e", "--storage", url, "--json").stdout)
    assert len(rows) == len(states)  # the killed trial is listed too, as failed
    rows = [row for row in rows if row["state"] == "COMPLETE"]
    assert len(rows) == 3
    for row in rows:
        for k in ("number", "state", "config", "params", "macs", "throughput", "accuracy", "feasible", "pareto"):
            assert k in row
        assert row["params"] > 0 and row["config"]["img_size"] == 64
        assert row["feasible"] == (row["throughput"] >= budget)
        if row["feasible"]:
            assert row["accuracy"] is not None and row["proxy"] == "macs"  # the default
    text = run_main(capsys, "show", "--study", "e2e", "--storage", url).stdout
    assert f"budget {budget:,.0f} img/s" in text and "pareto" in text

    # resuming with another budget would mix incomparable trials
    r = run_main(capsys, "search", "--budget", "500", "--trials", "6", "--study", "e2e", "--storage", url, *TINY_SEARCH)
    assert r.returncode == 2 and "created with another budget" in r.stderr


def test_under_budget_skips_the_proxy_and_repeats_reuse_results(tmp_path, capsys, local_ray):
    """A one-point space under an unreachable budget: the proxy is skipped, and the second
    trial (necessarily the same architecture) reuses the first result instead of re-measuring."""
    space = tmp_path / "one.yaml"
    space.write_text(ONE_POINT_SPACE)
    url = f"sqlite:///{tmp_path}/u.db"
    args = [a if a != "tiny" else str(space) for a in TINY_SEARCH]
    r = run_main(capsys, "search", "--budget", "1M", "--trials", "2", "--study", "u", "--storage", url, *args, "--no-anchor", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["complete"] == 2 and summary["feasible"] == 0 and summary["pareto"] == []
    rows = json.loads(run_main(capsys, "show", "--study", "u", "--storage", url, "--json").stdout)
    assert all(row["accuracy"] is None and row["feasible"] is False and row["throughput"] > 0 for row in rows)
    assert rows[0]["note"] == "under budget: proxy skipped"
    assert rows[1]["note"] == "same architecture as trial 0: result reused"
    assert rows[1]["throughput"] == rows[0]["throughput"] and rows[1]["hash"] == rows[0]["hash"]


def test_a_resumed_study_keeps_its_proxy_and_a_new_one_gets_the_default(tmp_path, capsys, local_ray):
    """The default proxy changed (naswot -> macs, from the fidelity study on real images): a
    study created with naswot resumes with naswot when --proxy is not given, a new study gets
    macs, and asking for another proxy explicitly is refused as before. (A one-point space under
    an unreachable budget: no proxy runs, the trials are cheap.)"""
    space = tmp_path / "one.yaml"
    space.write_text(ONE_POINT_SPACE)
    url = f"sqlite:///{tmp_path}/p.db"
    # --no-anchor: what is checked is the proxy; the anchored path has tests of its own
    args = ["search", "--budget", "1M", "--no-anchor", "--storage", url, *[a if a != "tiny" else str(space) for a in TINY_SEARCH]]
    assert run_main(capsys, *args, "--study", "old", "--trials", "1", "--proxy", "naswot").returncode == 0
    r = run_main(capsys, *args, "--study", "old", "--trials", "1")  # resumed (finished: nothing runs)
    assert r.returncode == 0 and "; proxy naswot on " in r.stdout, r.stderr[-2000:]
    r = run_main(capsys, *args, "--study", "old", "--trials", "2", "--proxy", "macs")
    assert r.returncode == 2 and "created with another proxy ('naswot')" in r.stderr, r.stderr
    r = run_main(capsys, *args, "--study", "new", "--trials", "1")
    assert r.returncode == 0 and "trace, malloc fixed, pages huge); proxy macs (reads no images, 32 px); " in r.stdout, r.stderr[-2000:]
    studies = {s["study"]: s for s in json.loads(run_main(capsys, "studies", "--storage", url, "--json").stdout)}
    assert (studies["old"]["proxy"], studies["new"]["proxy"]) == ("naswot", "macs")


def test_a_paired_search_judges_candidates_by_their_ratio_to_the_budget_preset(tmp_path, capsys, local_ray):
    """--paired: the candidate is timed in windows alternating with M0 (the budget's preset)
    and stored as ratio x M0's budget figure, under its own protocol key; --paired without a
    relative budget is one line."""
    from effvit_nas.measure.store import MeasurementStore

    space = tmp_path / "one.yaml"
    space.write_text(ONE_POINT_SPACE)
    url = f"sqlite:///{tmp_path}/p.db"
    args = [a if a != "tiny" else str(space) for a in TINY_SEARCH]
    r = run_main(capsys, "search", "--budget", "100xM0", "--paired", "--trials", "1", "--study", "p", "--storage", url, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "candidates paired with M0" in r.stdout
    reference = json.loads(run_main(capsys, "studies", "--storage", url, "--json").stdout)[0]["budget"] / 100
    (paired,) = [(k, m) for _, k, m in MeasurementStore(url).all() if "-vs-" in k]
    ratio = float(paired[1].note.split("paired: ")[1].split("x")[0])
    assert paired[1].throughput == pytest.approx(ratio * reference, rel=1e-3) and paired[1].windows >= 1
    rows = json.loads(run_main(capsys, "show", "--study", "p", "--storage", url, "--json").stdout)
    assert rows[0]["throughput"] == pytest.approx(paired[1].throughput)

    # another study's preset measures otherwise (almost always: one of its 3 runs may be the
    # stored one): its candidate is judged on its own scale, not by the first study's ratio x
    # M0 figure (a stored paired figure belongs to its scale)
    r = run_main(capsys, "search", "--budget", "50xM0", "--paired", "--trials", "1", "--study", "p2", "--storage", url, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    studies = {s["study"]: s["budget"] for s in json.loads(run_main(capsys, "studies", "--storage", url, "--json").stdout)}
    (row,) = json.loads(run_main(capsys, "show", "--study", "p2", "--storage", url, "--json").stdout)
    stored = next(m for _, k, m in MeasurementStore(url).all() if m.throughput == row["throughput"])
    ratio = float(stored.note.split("paired: ")[1].split("x")[0])
    assert row["throughput"] == pytest.approx(ratio * studies["p2"] / 50, rel=1e-3)

    r = run_main(capsys, "search", "--budget", "1k", "--paired", "--no-anchor", "--trials", "1", "--study", "q", "--storage", url, *args)
    assert r.returncode == 2 and "--no-anchor excludes --anchor, --paired and --reanchor" in r.stderr, r.stderr
    # anchored by default: an absolute budget pairs candidates with M0 (its figure the stored one)
    r = run_main(capsys, "search", "--budget", "1k", "--trials", "1", "--study", "q", "--storage", url, *args)
    assert r.returncode == 0 and "candidates paired with anchor M0" in r.stdout, r.stderr[-3000:]


def test_an_anchored_search_pairs_candidates_with_its_anchor_under_an_absolute_budget(tmp_path, capsys, local_ray):
    """--anchor M0 with an absolute budget: M0 is measured when the study is created, each
    candidate is stored as its ratio to M0 x that figure, feasibility is judged against the
    absolute budget; resumed without --anchor, the study goes on with its stored anchor and
    figure (nothing re-measured); with a relative budget or a wrong name it is one line."""
    import optuna

    from effvit_nas.measure.store import MeasurementStore

    space = tmp_path / "one.yaml"
    space.write_text(ONE_POINT_SPACE)
    url = f"sqlite:///{tmp_path}/a.db"
    args = ["search", "--storage", url, *[a if a != "tiny" else str(space) for a in TINY_SEARCH]]
    r = run_main(capsys, *args, "--budget", "1", "--anchor", "m0", "--trials", "1", "--study", "a")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "budget 1 img/s; candidates paired with anchor M0 (at the space's resolution measured" in r.stdout
    stored = optuna.load_study(study_name="a", storage=url).user_attrs["effvit"]
    assert (stored["anchor"], stored["paired"], stored["budget"], stored["budget_spec"]) == ("M0", True, 1.0, None)
    (figure,) = [m for _, k, m in MeasurementStore(url).all() if "-vs-" in k]
    ratio = float(figure.note.split("paired: ")[1].split("x anchor M0")[0])
    assert figure.throughput == pytest.approx(ratio * stored["budget_reference"], rel=1e-3)

    def anchor_measured_at() -> float:
        return next(m.finished for _, k, m in MeasurementStore(url).all() if k.endswith("-anchor"))  # M0's stored anchor figure

    before = anchor_measured_at()
    r = run_main(capsys, *args, "--budget", "1", "--trials", "2", "--study", "a")  # no --anchor: the stored one
    assert r.returncode == 0 and "paired with anchor M0" in r.stdout, r.stderr[-3000:]
    assert anchor_measured_at() == before  # the stored figure, not a new measurement

    r = run_main(capsys, *args, "--budget", "1", "--anchor", "M1", "--trials", "2", "--study", "a")
    assert r.returncode == 2 and "study 'a' was created with --anchor M0; use a new --study name" in r.stderr, r.stderr
    for budget, anchor, needle in [("M0", "M0", "--anchor is for an absolute budget"), ("1", "M9", "--anchor 'M9' names no preset")]:
        r = run_main(capsys, *args, "--budget", budget, "--anchor", anchor, "--trials", "1", "--study", "bad")
        assert r.returncode == 2 and needle in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_paired_figures_are_keyed_by_their_scale():
    """A paired figure is ratio x the reference's figure: another figure is another key."""
    from effvit_nas.arch.config import PRESETS
    from effvit_nas.measure.actor import paired_key
    from effvit_nas.measure.settings import BenchSettings

    s = BenchSettings(batch=16)
    assert paired_key(s, PRESETS["M0"], 812.5) == paired_key(s, PRESETS["M0"], 812.5)
    assert paired_key(s, PRESETS["M0"], 812.5) != paired_key(s, PRESETS["M0"], 812.6)
    assert paired_key(s, PRESETS["M0"], 812.5) != paired_key(s, PRESETS["M1"], 812.5)
    assert all(len(paired_key(s, PRESETS[m], 1e9 / 7)) <= 32 for m in PRESETS)  # the store's key column


def test_a_study_stored_before_paired_existed_resumes_unpaired():
    from dataclasses import replace

    from effvit_nas.search.problem import SearchProblem

    # private: the comparison of a stored problem with a wanted one, without a stored study of the old format
    from effvit_nas.search.study import _check_same_problem

    problem = SearchProblem(device="cpu", budget=100.0, budget_spec="1xM0", budget_reference=100.0)

    class Stored:
        study_name = "old"

        def __init__(self):
            self.user_attrs = {"effvit": {k: v for k, v in problem.identity().items() if k != "paired"}}

    _check_same_problem(Stored(), problem)  # no error: the old study was unpaired
    with pytest.raises(Exception, match="another paired"):
        _check_same_problem(Stored(), replace(problem, paired=True))


def test_a_study_timed_before_settling_existed_keeps_its_protocol():
    """A study stored before `pair_settle_s` existed was timed without settling: its stored
    settings read back with 0 (so their key finds its figures), and resuming it with today's
    default is refused naming the setting, not mixing two protocols."""
    from dataclasses import asdict, replace

    from effvit_nas.measure.settings import BenchSettings, with_later_fields
    from effvit_nas.search.problem import SearchProblem
    from effvit_nas.search.study import _check_same_problem

    old_bench = {k: v for k, v in asdict(BenchSettings(batch=16)).items() if k != "pair_settle_s"}
    assert BenchSettings.from_stored(old_bench) == BenchSettings(batch=16, pair_settle_s=0.0)
    assert BenchSettings.from_stored(old_bench).key() != BenchSettings(batch=16).key()
    assert with_later_fields(old_bench, asdict(BenchSettings(batch=16)))["pair_settle_s"] == 0.0
    problem = SearchProblem(device="cpu", budget=100.0, budget_spec="1xM0", budget_reference=100.0)

    class Stored:
        study_name = "old"

        def __init__(self):
            self.user_attrs = {"effvit": {**problem.identity(), "bench": old_bench}}

    with pytest.raises(Exception, match=r"another bench \(BenchSettings.pair_settle_s 0.0, not 0.01\)"):
        _check_same_problem(Stored(), problem)
    _check_same_problem(Stored(), replace(problem, bench=BenchSettings(batch=16, pair_settle_s=0.0)))  # its protocol: resumes


def test_pareto_set_lists_each_architecture_once():
    import optuna

    from effvit_nas.trials.pareto import pareto_trials

    study = optuna.create_study(directions=["maximize", "maximize"])
    dist = {"x": optuna.distributions.IntDistribution(0, 10)}
    for number, (h, acc, tp, con) in enumerate(
        [("a", 0.5, 900.0, -0.1), ("b", 0.7, 500.0, -0.1), ("a", 0.5, 900.0, -0.1), ("c", 0.9, 100.0, 0.5)]
    ):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": number},
                distributions=dist,
                values=[acc, tp],
                user_attrs={"config_hash": h, "measured": True},
                system_attrs={"constraints:throughput": con},
            )
        )
    front = pareto_trials(study)
    assert [t.user_attrs["config_hash"] for t in front] == ["b", "a"]  # c is infeasible, a once
    assert [t.number for t in front] == [1, 0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["search", "--budget", "fast", "--trials", "1"], "--budget 'fast' is not a budget"),
        (["search", "--budget", "1k"], "--trials N or --timeout"),
        (["search", "--budget", "1k", "--trials", "1", "--device", "v100"], "not available"),
        (["search", "--budget", "1k", "--trials", "1", "--space", "nope"], "bundled space"),
        (["search", "--budget", "1k", "--trials", "1", "--timeout", "soon"], "--timeout 'soon' is not a duration"),
        (["search", "--budget", "1k", "--trials", "0"], "--trials must be positive"),
        (["search", "--budget", "1k", "--trials", "1", "--data", "/no/such/dir"], "does not exist"),
        (["search", "--trials", "1"], "give --budget BUDGET or --target"),
        (
            ["search", "--budget", "5ms", "--metric", "throughput", "--trials", "1"],
            "--metric is throughput, but the budget '5ms' is a latency",
        ),
        (["search", "--budget", "5ms", "--batch", "16", "--trials", "1"], "--batch must be 1 for the latency metric"),
        (["search", "--target", "cpu/tvm:4ms", "--trials", "1"], "--target 'cpu/tvm:4ms': backend 'tvm' is unknown"),
        (["search", "--target", "cpu:1k", "--budget", "1k", "--trials", "1"], "exclude each other"),
        (["search", "--target", "cpu/trace:1k", "--target", "cpu/trace:2k", "--trials", "1"], "give one budget"),
        (["search", "--target", "cpu/tensorrt:4ms", "--trials", "1"], "run `uv sync --extra tensorrt`"),
        (["show", "--study", "nothing-here"], "no database file"),
        (["show", "--study", "x", "--json", "--csv"], "--json or --csv, not both"),
    ],
)
def test_search_bad_input(tmp_path, capsys, args, needle):
    import optuna

    url = f"sqlite:///{tmp_path}/b.db"
    r = run_main(capsys, *args, "--storage", url)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()  # Ray's "Token authentication is enabled" line included, if it came back
    assert len(lines) == 1 and needle in lines[0], r.stderr
    # no empty study left behind: it would refuse the corrected command as "created with another data"
    assert not (tmp_path / "b.db").exists() or optuna.get_all_study_names(url) == []


def test_a_missing_device_is_refused_before_a_relative_budget_measures_its_preset(tmp_path, capsys, monkeypatch):
    """Measuring M0 first would start Ray: 20 s before the same one-line refusal."""

    def measured(*a, **kw):
        raise AssertionError("the preset was measured before the device was checked")

    monkeypatch.setattr("effvit_nas.search.budget.study_budget", measured)
    r = run_main(capsys, "search", "--budget", "M0", "--trials", "1", "--device", "v100", "--storage", f"sqlite:///{tmp_path}/b.db")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: device 'v100' is not available"), r.stderr


def test_a_failing_candidate_is_stored_failed_and_the_search_goes_on(tmp_path, local_ray, monkeypatch):
    """The second candidate runs out of memory while being measured (torch's own exception):
    it is stored FAIL with the reason, and the search still ends with the trials asked for."""
    import optuna
    import torch

    from effvit_nas.search.execution import RayExecution
    from effvit_nas.search.loop import run_search

    real, calls = RayExecution._submit, []

    def submit_or_oom(self, work):
        calls.append(work.config.short_hash())
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, work)

    monkeypatch.setattr(RayExecution, "_submit", submit_or_oom)
    url = f"sqlite:///{tmp_path}/f.db"
    summary = run_search(*tiny_search_settings(url, "f", trials=3))
    assert summary.complete == 3 and summary.failed == 1
    study = optuna.load_study(study_name="f", storage=url)
    failed = study.get_trials(states=[optuna.trial.TrialState.FAIL])
    assert len(failed) == 1 and failed[0].number == 1
    assert failed[0].user_attrs["fail_reason"].startswith("OutOfMemoryError: CUDA out of memory")
    assert failed[0].user_attrs["config_hash"] == calls[1]


def test_a_failure_inside_the_device_actor_is_stored_with_its_own_reason(tmp_path, local_ray):
    """A batch no machine can allocate fails inside the Ray actor that measures (Ray wraps it
    in a RayTaskError): each trial stores torch's own reason, and the search stops at the
    failure limit with one line (issue 19 item 2: the driver-side test above cannot see Ray's
    wrapping)."""
    import dataclasses

    import optuna

    from effvit_nas.errors import UserError
    from effvit_nas.search.loop import run_search

    url = f"sqlite:///{tmp_path}/a.db"
    problem, options = tiny_search_settings(url, "a", trials=5, max_failures=2)
    problem = dataclasses.replace(problem, bench=dataclasses.replace(problem.bench, batch=10_000_000))  # 123 GB of input
    with pytest.raises(UserError, match="stopping: 3 candidates failed"):
        run_search(problem, options)
    failed = optuna.load_study(study_name="a", storage=url).get_trials(states=[optuna.trial.TrialState.FAIL])
    assert len(failed) == 3
    assert all("DefaultCPUAllocator: can't allocate memory" in t.user_attrs["fail_reason"] for t in failed)
    assert not any("RayTaskError" in t.user_attrs["fail_reason"] or "ray::" in t.user_attrs["fail_reason"] for t in failed)


def test_a_killed_device_actor_is_restarted_and_the_search_goes_on(tmp_path, local_ray):
    """SIGKILL the process of the actor that measures while a search runs (issue 18 item 6):
    Ray restarts it and re-sends the call it was running, so no trial fails or is lost."""
    import dataclasses
    import os
    import signal
    import threading

    import optuna

    from effvit_nas.measure.actor import NAMESPACE
    from effvit_nas.search.loop import run_search

    url = f"sqlite:///{tmp_path}/k.db"
    problem, options = tiny_search_settings(url, "k", budget=1.0, trials=4)
    problem = dataclasses.replace(problem, proxy="params")
    box = {}
    search = threading.Thread(target=lambda: box.update(summary=run_search(problem, options)))
    search.start()
    deadline = time.time() + 120
    while time.time() < deadline and not _complete(tmp_path / "k.db"):
        time.sleep(0.05)
    actor = local_ray.get_actor("effvit-device-cpu", namespace=NAMESPACE)
    os.kill(local_ray.get(actor.__ray_call__.remote(lambda _: os.getpid())), signal.SIGKILL)
    search.join(timeout=240)
    study = optuna.load_study(study_name="k", storage=url)
    assert [(t.state.name, t.user_attrs.get("fail_reason")) for t in study.trials] == [("COMPLETE", None)] * 4
    assert box["summary"].complete == 4 and box["summary"].failed == 0


def _complete(path) -> bool:
    """Whether the search writing the SQLite file ``path`` has finished a trial (read with
    sqlite3: opening it with Optuna while the search creates it would race on its tables)."""
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] > 0
    except sqlite3.OperationalError:  # not created yet
        return False


def test_search_on_postgres_resumes(postgres_url, capsys):
    """The study in a real PostgreSQL server: a search, then the same study grown by a second
    run (another process could be running it), read back by `show`. Measurement and proxies
    are fakes here: what is tested is the study's storage (Ray runs in the other tests)."""
    import uuid

    from effvit_nas.search.loop import run_search
    from tests.support import by_width, fake_proxies, run_main

    name = f"pg-{uuid.uuid4().hex[:8]}"
    fakes = dict(measure=by_width, run_proxies=fake_proxies)
    assert run_search(*tiny_search_settings(postgres_url, name, trials=2), **fakes).complete == 2
    again = run_search(*tiny_search_settings(postgres_url, name, trials=3), **fakes)
    assert again.complete == 3 and again.run_trials == 1
    r = run_main(capsys, "show", "--study", name, "--storage", postgres_url, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3 and all(row["throughput"] > 0 for row in rows)


# Three real `search` processes at once on one study: benchmarks/multi_driver.py
# (results/multi_driver.md); over a minute of start-ups here, so the suite checks the parts.
def test_drivers_starting_together_on_a_fresh_postgres_database_all_open_the_study(postgres_url):
    """Three drivers create the tables (theirs and Optuna's) and the study at once, as three
    `search` processes started together do: all succeed, the study knows each (the driver
    count), and they sample with different seeds (was: a unique violation in pg_type for all
    but one, and one sequence of architectures drawn three times)."""
    import threading
    import uuid

    from benchmarks.multi_driver import fresh_database
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.search.study import DRIVERS_ATTR, open_study

    url = fresh_database(postgres_url, f"multi_{uuid.uuid4().hex[:8]}")
    problem, options = tiny_search_settings(url, "multi", trials=3)
    start, handles, errors = threading.Barrier(3), [], []

    def driver() -> None:
        try:
            start.wait()
            MeasurementStore(url)
            handles.append(open_study(problem, options))
        except Exception as e:  # reported below, with its type
            errors.append(repr(e))

    threads = [threading.Thread(target=driver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(handles) == 3, errors
    assert handles[0].study.user_attrs[DRIVERS_ATTR] == 3
    draws = [h.study.sampler.sample_independent(h.study, None, "x", _uniform()) for h in handles]
    assert len(set(draws)) == 3, draws


def _uniform():
    from optuna.distributions import FloatDistribution

    return FloatDistribution(0.0, 1.0)


def test_halving_records_the_steps_behind_each_accuracy(tmp_path, capsys, local_ray):
    """A real search with the train proxy under successive halving (9 steps: rungs at 1 and 3):
    every trial stores the steps its accuracy came from and its rung top-1s; the stored stop
    decisions are those the rule gives when replayed in trial order; stopped trials stay out
    of the Pareto set."""
    import optuna

    from effvit_nas.proxy.halving import Halving, promoted
    from effvit_nas.trials.records import Attr, TrialRecord

    url = f"sqlite:///{tmp_path}/h.db"
    args = [
        "search",
        "--budget",
        "1",
        "--trials",
        "4",
        "--study",
        "h",
        "--storage",
        url,
        *TINY_SEARCH,
        "--proxy",
        "train",
        "--steps",
        "9",
        "--no-anchor",
    ]
    r = run_main(capsys, *args, "--halving", "3", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    pareto = {p["number"] for p in json.loads(r.stdout)["pareto"]}
    trials = optuna.load_study(study_name="h", storage=url).get_trials(states=[optuna.trial.TrialState.COMPLETE])
    records = sorted((TrialRecord.of(t) for t in trials), key=lambda r: r.number)
    earlier: dict[int, list] = {1: [], 3: []}
    for rec in records:
        if rec.note.startswith("same architecture"):
            continue
        rungs = {int(k): v for k, v in rec.attrs[Attr.RUNGS].items()}
        expect_stop = None
        for step in Halving().rung_steps(9):
            go_on = promoted((rungs[step], rec.throughput), earlier[step], 3)
            earlier[step].append((rungs[step], rec.throughput))
            if not go_on:
                expect_stop = step
                break
        assert rec.stopped == (expect_stop is not None), rec.number
        assert rec.attrs[Attr.PROXY_STEPS] == (expect_stop or 9)
        assert not (rec.stopped and rec.number in pareto)
    assert all(not rec.stopped for rec in records[:3])  # nothing to compare with yet

    r = run_main(capsys, "search", "--budget", "1", "--trials", "2", "--study", "h2", "--storage", url, "--halving", "3", *TINY_SEARCH)
    assert r.returncode == 2 and "--halving applies to --proxy train" in r.stderr
