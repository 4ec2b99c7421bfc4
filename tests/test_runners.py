"""runners/ray_node.sh drives `ray` with token authentication: a fake `ray` records how."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "runners" / "ray_node.sh"
FAKE_RAY = """import json, os, sys
with open(os.environ["FAKE_RAY_LOG"], "a") as f:
    f.write(json.dumps([sys.argv[1:], os.environ.get("RAY_AUTH_MODE")]) + "\\n")
if sys.argv[1:3] == ["get-auth-token", "--generate"]:
    token = os.path.expanduser("~/.ray/auth_token")
    os.makedirs(os.path.dirname(token), exist_ok=True)
    if not os.path.exists(token):
        open(token, "w").write("head-token")
"""


@pytest.fixture
def node(tmp_path):
    """Run the script with a private home and a fake `ray`; returns (run, calls)."""
    import json

    (tmp_path / "fake_ray.py").write_text(FAKE_RAY)
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "FAKE_RAY_LOG": str(log), "RAY": f"{sys.executable} {tmp_path / 'fake_ray.py'}"}
    env.pop("RAY_AUTH_MODE", None)

    def run(*args):
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return run, calls, tmp_path / "home" / ".ray" / "auth_token"


def test_head_creates_the_token_and_starts_in_token_mode(node):
    run, calls, token = node
    assert run("head", "6380").returncode == 0
    assert token.read_text() == "head-token"
    assert calls() == [[["get-auth-token", "--generate"], "token"], [["start", "--head", "--port", "6380"], "token"]]


def test_join_installs_the_given_token_then_joins(node, tmp_path):
    run, calls, token = node
    (tmp_path / "copied").write_text("head-token")
    assert run("join", "10.0.0.1:6379", str(tmp_path / "copied")).returncode == 0
    assert token.read_text() == "head-token" and oct(token.stat().st_mode & 0o777) == "0o600"
    assert calls() == [[["start", "--address", "10.0.0.1:6379"], "token"]]


def test_join_without_a_token_stops_with_one_line_and_runs_no_ray(node):
    run, calls, _ = node
    r = run("join", "10.0.0.1:6379")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "copy the head's ~/.ray/auth_token" in r.stderr
    assert calls() == []
    assert run("bogus").returncode == 2 and calls() == []
