import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from effvit_nas.errors import UserError
from effvit_nas.search import parse_budget, parse_duration

from .conftest import run_cli

TINY_SEARCH = [
    "--space", "tiny", "--device", "cpu", "--steps", "8", "--img-size", "32", "--classes", "4",
    "--train-per-class", "16", "--val-per-class", "8", "--warmup", "0.1", "--duration", "0.3", "--heartbeat", "1",
]


@pytest.mark.parametrize(
    "text, value",
    [("10k-imgs/s", 10_000), ("10000img/s", 10_000), ("2.5k", 2_500), ("300-imgs/s", 300), ("1.5M", 1.5e6), (" 42 ", 42)],
)
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["fast", "10 kimgs", "-3k", "0", "10k-imgs/min", ""])
def test_bad_budgets(text):
    with pytest.raises(UserError, match="invalid --budget"):
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


def test_search_end_to_end_resume_and_show(tmp_path):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    r = run_cli("search", "--budget", "300-imgs/s", "--trials", "3", "--study", "e2e", "--storage", url, *TINY_SEARCH, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["complete"] == 3 and summary["run_trials"] == 3 and summary["feasible"] >= 1
    for p in summary["pareto"]:
        assert p["feasible"] and p["pareto"] and p["throughput"] >= 300 and p["accuracy"] > 0 and p["proxy"] == "naswot"

    # same command with more trials: resumes and runs only the missing ones
    r = run_cli("search", "--budget", "300-imgs/s", "--trials", "5", "--study", "e2e", "--storage", url, *TINY_SEARCH, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [s for _, s in _trials(str(db), "e2e")].count("COMPLETE") == 5

    rows = json.loads(run_cli("show", "--study", "e2e", "--storage", url, "--json").stdout)
    assert len(rows) == 5
    for row in rows:
        for k in ("number", "state", "config", "params", "macs", "throughput", "accuracy", "feasible", "pareto"):
            assert k in row
        assert row["params"] > 0 and row["config"]["img_size"] == 64
        if row["feasible"]:
            assert row["throughput"] >= 300 and row["accuracy"] is not None
    assert any(r["pareto"] for r in rows)
    text = run_cli("show", "--study", "e2e", "--storage", url).stdout
    assert "budget 300 img/s" in text and "pareto" in text

    # resuming with another budget would mix incomparable trials
    r = run_cli("search", "--budget", "500", "--trials", "6", "--study", "e2e", "--storage", url, *TINY_SEARCH)
    assert r.returncode == 2 and "created with another budget" in r.stderr


def test_under_budget_candidates_skip_the_proxy(tmp_path):
    url = f"sqlite:///{tmp_path}/u.db"
    r = run_cli("search", "--budget", "1M", "--trials", "2", "--study", "u", "--storage", url, *TINY_SEARCH, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["feasible"] == 0
    rows = json.loads(run_cli("show", "--study", "u", "--storage", url, "--json").stdout)
    assert all(row["accuracy"] is None and row["feasible"] is False and row["throughput"] > 0 for row in rows)


def test_resume_after_sigkill(tmp_path):
    db = tmp_path / "k.db"
    url = f"sqlite:///{db}"
    args = [sys.executable, "-m", "effvit_nas.cli", "search", "--budget", "300", "--trials", "4", "--study", "k", "--storage", url, *TINY_SEARCH, "--quiet"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    states: list = []
    while time.time() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                states = [s for _, s in _trials(str(db), "k")]
            except sqlite3.OperationalError:
                continue
            if states.count("COMPLETE") >= 1 and "RUNNING" in states:
                break
    assert "RUNNING" in states, f"never saw a running trial: {states}"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(4)  # > 3 heartbeats: the killed trial is now stale

    r = run_cli("search", "--budget", "300", "--trials", "4", "--study", "k", "--storage", url, *TINY_SEARCH, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    after = _trials(str(db), "k")
    assert [s for _, s in after].count("COMPLETE") == 4
    assert "RUNNING" not in [s for _, s in after]
    assert "FAIL" in [s for _, s in after]  # the killed trial, failed by its stale heartbeat and re-run


@pytest.mark.parametrize(
    "args, needle",
    [
        (["search", "--budget", "fast", "--trials", "1"], "invalid --budget"),
        (["search", "--budget", "1k"], "--trials N or --timeout"),
        (["search", "--budget", "1k", "--trials", "1", "--device", "v100"], "not available"),
        (["search", "--budget", "1k", "--trials", "1", "--space", "nope"], "bundled space"),
        (["search", "--budget", "1k", "--trials", "1", "--timeout", "soon"], "invalid --timeout"),
        (["show", "--study", "nothing-here"], "no study"),
    ],
)
def test_search_bad_input(tmp_path, args, needle):
    r = run_cli(*args, "--storage", f"sqlite:///{tmp_path}/b.db")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [l for l in r.stderr.strip().splitlines() if "Token authentication" not in l]
    assert len(lines) == 1 and needle in lines[0], r.stderr
