"""`effvit-nas fidelity` end to end: real proxies, real reference trainings in Ray tasks, real
throughput measurements, on the tiny space and small synthetic data."""

import json

import pytest

from tests.support import run_main

BASE = [
    "fidelity", "--space", "tiny", "--data", "synthetic", "--img-size", "32", "--classes", "4",
    "--train-per-class", "16", "--val-per-class", "8", "--reference-per-class", "24", "--reference-steps", "6",
    "--archs", "3", "--batch", "16", "--threads", "1", "--warmup", "0.05", "--duration", "0.2",
]  # fmt: skip


def test_runs_stores_and_resumes_with_only_the_new_proxy(tmp_path, local_ray, capsys):
    args = [*BASE, "--storage", f"sqlite:///{tmp_path}/f.db", "--proxies", "params,dss,train@3"]
    r = run_main(capsys, *args)
    assert r.returncode == 0, r.stderr
    assert "0 results stored, 15 to run" in r.stderr  # 3 archs x (3 proxies + 2 seeds)
    assert "3 of 3 architectures have every reference seed" in r.stdout
    assert "reference seed vs seed (ceiling)" in r.stdout and "dss" in r.stdout

    r = run_main(capsys, *[*args[:-1], "params,dss,train@3,naswot"], "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "15 results stored, 3 to run" in r.stderr and "results stored" not in r.stdout  # progress on stderr with --json
    assert {row["proxy"] for row in report["rows"]} == {"params", "dss", "train@3", "naswot"}
    assert report["complete"] == 3 and all(len(a["reference"]) == 2 for a in report["per_arch"])
    assert all(a["throughput"] > 0 and len(a["proxies"]) == 4 for a in report["per_arch"])
    params = next(row for row in report["rows"] if row["proxy"] == "params")["agreement"]
    assert params["kendall_ci"][0] <= params["kendall"] <= params["kendall_ci"][1]

    r = run_main(capsys, *args[:-1], "params,dss,train@3,naswot", "--report-only", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == report  # same stored results, same bootstrap seed

    r = run_main(capsys, *args, "--reference-per-class", "30", "--report-only")
    assert r.returncode == 2 and "other settings" in r.stderr and "reference" in r.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--band", "M0"], "--band"),
        (["--band", "M9±20%"], "--band 'M9±20%': 'M9' names no preset"),
        (["--proxies", ""], "--proxies"),
        (["--proxies", "naswot,train"], "--proxies"),
        (["--reference-epochs", "2"], "not both"),
        (["--archs", "2"], "--archs"),
        (["--report-only"], "no database file"),  # a missing file is not created to report on
    ],
)
def test_bad_input_is_one_line(extra, message, tmp_path, capsys):
    r = run_main(capsys, *BASE, "--storage", f"sqlite:///{tmp_path}/x.db", *extra)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
