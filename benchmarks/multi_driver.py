"""Several drivers on one study (results/multi_driver.md): lost, repeated or twice-timed trials.

Runs the same `effvit-nas search` command in 1 and then K processes at once (Optuna's
distributed pattern), each time on a fresh database of a local PostgreSQL server (started
with runners/postgres.sh), every process with its own local Ray on this machine. Reported per
run: wall time, trials the study holds by state (a trial left RUNNING or WAITING would be
lost), architectures drawn more than once, architectures whose trials carry different
throughput figures (timed twice: one timing never repeats another to the last bit), and
trials per hour. On one machine the drivers share its cores and one device lock, so the K-driver
run shows correctness under contention, not a speed-up.

    uv run python benchmarks/multi_driver.py --drivers 3 --trials 24
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._report import write_report

ROOT = Path(__file__).resolve().parent.parent
PORT = "5441"  # not the tests' (5439) nor the default (5433) server
SEARCH = [
    "--space", "tiny", "--device", "cpu", "--budget", "500", "--proxy", "train", "--steps", "20",
    "--data", "fashion-mnist", "--train-per-class", "50", "--val-per-class", "50",
    "--warmup", "0.5", "--duration", "1.5", "--heartbeat", "5",
]  # fmt: skip


def _server() -> str:
    env = {**os.environ, "EFFVIT_PG_PORT": PORT}
    r = subprocess.run(["bash", str(ROOT / "runners/postgres.sh"), "start"], capture_output=True, text=True, env=env, check=True)
    return r.stdout.strip().splitlines()[-1]


def fresh_database(server: str, name: str) -> str:
    """The URL of database ``name``, new and empty, on the PostgreSQL server of ``server`` (an
    existing one of that name is dropped); the suite's multi-driver test uses it too."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def run(drivers: int, trials: int, server: str) -> dict[str, Any]:
    url = fresh_database(server, f"multi_driver_{drivers}")
    cmd = [
        sys.executable,
        "-m",
        "effvit_nas.cli",
        "search",
        "--study",
        "multi",
        "--storage",
        url,
        "--trials",
        str(trials),
        *SEARCH,
        "--quiet",
    ]
    t = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(drivers)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t
    show = subprocess.run([*cmd[:3], "show", "--study", "multi", "--storage", url, "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(show.stdout)
    figures: dict[str, set] = {}
    for row in rows:
        if row["throughput"] is not None:
            figures.setdefault(row["hash"], set()).add(row["throughput"])
    complete = sum(row["state"] == "COMPLETE" for row in rows)
    return {
        "drivers": drivers,
        "exit_codes": [p.returncode for p in procs],
        "errors": [err.strip().splitlines()[-1] for _, err in outs if err.strip()],
        "wall_s": wall,
        "trials": len(rows),
        "states": dict(Counter(row["state"] for row in rows)),
        "architectures": len({row["hash"] for row in rows}),
        "drawn_again": sum(n - 1 for n in Counter(row["hash"] for row in rows).values()),
        "reused": sum("result reused" in (row.get("note") or "") for row in rows),
        "timed_twice": sum(len(f) > 1 for f in figures.values()),
        "complete_per_hour": complete / wall * 3600,
    }


def report(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Several drivers on one study (PostgreSQL)",
        "",
        f"Command: `{command}` (`benchmarks/multi_driver.py`). The same search (tiny space, 64 px,",
        "budget 500 img/s, proxy train 20 steps on 500 Fashion-MNIST images, short timing protocol)",
        "run by 1 process, then by K processes at once, on a fresh database each; every process starts",
        "its own local Ray on this 2-core machine. `--trials N` stops each driver once the study holds",
        "N complete trials, so a few more finish (those in flight).",
        "",
        "| drivers | exit codes | wall (s) | trials by state | architectures | drawn again (reused) | timed twice | complete trials / hour |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        lines.append(
            f"| {r['drivers']} | {' '.join(map(str, r['exit_codes']))} | {r['wall_s']:.0f} | {states} | {r['architectures']} | "
            f"{r['drawn_again']} ({r['reused']}) | {r['timed_twice']} | {r['complete_per_hour']:.0f} |"
        )
    errors = [e for r in results for e in r["errors"]]
    lines += ["", "Errors printed by the drivers: " + ("; ".join(errors) if errors else "none."), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drivers", type=int, default=3)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--out", type=Path, default=ROOT / "results/multi_driver.md")
    args = ap.parse_args()
    server = _server()
    try:
        results = [run(1, args.trials, server), run(args.drivers, args.trials, server)]
    finally:
        subprocess.run(["bash", str(ROOT / "runners/postgres.sh"), "stop"], env={**os.environ, "EFFVIT_PG_PORT": PORT}, check=False)
    command = f"uv run python benchmarks/multi_driver.py --drivers {args.drivers} --trials {args.trials}"
    write_report(args.out, report(results, command), {"command": command, "runs": results})
    print(args.out.read_text())


if __name__ == "__main__":
    main()
