"""Trials per hour with 1 and 2 measurement actors on a 2-node local Ray cluster (results/scaling.md).

Two Ray nodes on this machine stand for two machines: each is started pinned to one core
(``taskset``) with a device-lock folder of its own (``$EFFVIT_NAS_LOCK_DIR``), so each node's
CPU actor times on its own core with the paper's 1 thread, and neither waits for the other's
lock. Both nodes offer 2 logical CPUs to Ray: 1 for the device actor, 1 for a proxy, which the
search never runs on a node while that node times. The same search (random sampler, one seed,
proxy ``macs``, a budget every candidate meets, so every trial is measured) runs with
``--measure-actors 1`` and ``2``, alternating, each on a fresh SQLite study and store.

Reported per run: complete trials per hour after set-up (Ray join, study, actor start), the
seconds from submitting a proxy to its result (per trial), the device actors' busy share of
that time, and their idle share ``1 - busy / (actors x loop time)`` split by reason (the
search's own accounting, :mod:`effvit_nas.search.usage`): a proxy ran on the actor's node (on
this CPU target no timing runs beside one), the run's last measurement had started (nothing
left to give it), and the rest, the orchestration overhead proper (telling, asking and
screening before a candidate is ready, Ray's round trips). The driver, Ray's own processes and
the proxies share the machine's 2 cores with the timings, which a real cluster would not.

    uv run python benchmarks/scaling.py --trials 24 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._report import write_report

ROOT = Path(__file__).resolve().parent.parent
PORT = 6393
SEARCH = ["--space", "efficientvit64", "--device", "cpu", "--budget", "1", "--proxy", "macs", "--sampler", "random", "--quiet", "--json"]


def _ray_env(lock_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    if lock_dir is not None:
        env["EFFVIT_NAS_LOCK_DIR"] = str(lock_dir)
    return env


def start_cluster(work: Path, port: int = PORT, node_args: Sequence[Sequence[str]] = ((), ()), pin: bool = True) -> str:
    """Ray nodes on this machine, each with its own lock folder, the i-th pinned to core i when
    ``pin`` (the first is the head) and ``node_args[i]`` added to its `ray start`; returns the
    head's address."""
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray, "get-auth-token", "--generate"], env=_ray_env(), check=True, capture_output=True)
    common = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--include-log-monitor", "false"]
    for core, more in enumerate(node_args):
        role = ["--head", "--port", str(port), "--include-dashboard", "false"] if core == 0 else ["--address", f"127.0.0.1:{port}"]
        taskset = ["taskset", "-c", str(core % os.cpu_count())] if pin else []
        cmd = [*taskset, *ray, "start", *role, *common, *more]
        subprocess.run(cmd, env=_ray_env(work / f"node{core}"), check=True, capture_output=True)
    return f"127.0.0.1:{port}"


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) if proc.name.isdigit() else None
        except (OSError, IndexError, ValueError):
            continue
        if ppid is not None:
            out.setdefault(ppid, []).append(int(proc.name))
    return out


def stop_cluster(work: Path, port: int = PORT) -> None:
    """Kill the processes this benchmark's `ray start` left (they carry its lock folders in their
    environment) with all their descendants, and the cluster address `ray start` recorded."""
    marker = f"EFFVIT_NAS_LOCK_DIR={work}".encode()
    marked = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int(proc.name) != os.getpid() and marker in (proc / "environ").read_bytes():
                marked.append(int(proc.name))
        except OSError:
            pass
    children, doomed = _children(), set()
    while marked:
        pid = marked.pop()
        if pid not in doomed:
            doomed.add(pid)
            marked += children.get(pid, [])
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if recorded.exists() and str(port) in recorded.read_text():
        recorded.unlink()


def run(actors: int, trials: int, seed: int, work: Path, index: int) -> dict[str, Any]:
    db = work / f"run{index}-{actors}.db"
    cmd = [sys.executable, "-m", "effvit_nas.cli", "search", *SEARCH, "--trials", str(trials), "--seed", str(seed)]
    cmd += ["--measure-actors", str(actors), "--ray-address", f"127.0.0.1:{PORT}", "--storage", f"sqlite:///{db}", "--study", "scaling"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_ray_env())
    if r.returncode != 0:
        raise SystemExit(f"search failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    s = json.loads(r.stdout)
    loop = s["seconds"] - s["setup_s"]
    actor_s = s["measure_actors"] * loop
    busy = s["measure_s"] / actor_s
    idle = {k: round(v / actor_s, 3) for k, v in s["actor_idle_s"].items()}
    return {
        "actors": actors,
        "measured_by": s["measured_by"],
        "wall_s": round(time.perf_counter() - t, 1),
        "setup_s": round(s["setup_s"], 1),
        "loop_s": round(loop, 1),
        "complete": s["complete"],
        "failed": s["failed"],
        "trials_per_hour": round(s["run_trials"] / loop * 3600, 1),
        "proxy_s_per_trial": round(s["proxy_s"] / max(s["run_trials"], 1), 3),  # submit to result
        "busy_share": round(busy, 3),
        "overhead_share": round(1 - busy, 3),
        "idle_proxy_share": idle["proxy"],
        "idle_end_share": idle["end"],
        "orchestration_share": idle["other"],
    }


def _median_pct(rows: list[dict[str, Any]], key: str) -> str:
    return f"{100 * statistics.median(r[key] for r in rows):.1f} %"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by = {a: [r for r in rows if r["actors"] == a] for a in (1, 2)}
    med = {a: statistics.median(r["trials_per_hour"] for r in rs) for a, rs in by.items()}
    lines = [
        "# Scaling: trials per hour with 1 and 2 measurement actors (2-node local Ray cluster, CPU)",
        "",
        f"Command: `uv run python benchmarks/scaling.py --trials {args.trials} --repeats {args.repeats}`",
        "",
        "Two Ray nodes on this machine (2 cores), each pinned to one core with its own device lock; the CPU "
        "protocol (batch 16, 1 thread, 1.5 s warm-up, up to 4 s of 0.25 s windows); search: "
        f"`effvit-nas search {' '.join(SEARCH[:-2])} --trials {args.trials} --measure-actors N --ray-address HEAD`, "
        "a fresh study and store per run, runs alternating.",
        "",
        "| run | actors | measured by | set-up s | loop s | complete | failed | trials/h | proxy s/trial | actors busy "
        "| idle | idle: proxy on the node | idle: after the last start | idle: orchestration |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        lines.append(
            f"| {i + 1} | {r['actors']} | {r['measured_by']} | {r['setup_s']} | {r['loop_s']} | {r['complete']} | {r['failed']} "
            f"| {r['trials_per_hour']:.0f} | {r['proxy_s_per_trial']:.2f} | {100 * r['busy_share']:.1f} % | {100 * r['overhead_share']:.1f} % "
            f"| {100 * r['idle_proxy_share']:.1f} % | {100 * r['idle_end_share']:.1f} % | {100 * r['orchestration_share']:.1f} % |"
        )
    spread = {a: f"{min(r['trials_per_hour'] for r in rs):.0f}-{max(r['trials_per_hour'] for r in rs):.0f}" for a, rs in by.items()}
    lines += [
        "",
        f"- Median trials per hour: 1 actor {med[1]:.0f} (range {spread[1]}), 2 actors {med[2]:.0f} (range {spread[2]}): "
        f"**{med[2] / med[1]:.2f}x** (goal >= 1.8x).",
        f"- Median idle share of the actors' time: 1 actor {_median_pct(by[1], 'overhead_share')}, "
        f"2 actors {_median_pct(by[2], 'overhead_share')}; of it orchestration (idle with no proxy computing on the node, "
        f"before the last start): 1 actor {_median_pct(by[1], 'orchestration_share')}, "
        f"2 actors {_median_pct(by[2], 'orchestration_share')} (goal < 5 %).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "scaling.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="effvit-scaling-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still take the cluster down
    rows = []
    try:
        start_cluster(work)
        for i in range(args.repeats):
            for actors in (1, 2):
                rows.append(run(actors, args.trials, args.seed, work, i))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        stop_cluster(work)
        shutil.rmtree(work, ignore_errors=True)
    write_report(args.out, report(rows, args), {"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows})
    print(args.out.read_text())


if __name__ == "__main__":
    main()
