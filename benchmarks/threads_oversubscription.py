"""How a busy machine slows the train proxy, before and after issue 45's thread defaults
(results/threads.md).

`effvit-nas proxy M0 --data synthetic` (the train proxy's 200 steps) runs alone and beside 1
and 2 busy processes (``python -c "while True: pass"``, started here and killed by PID), with
the code of two checkouts:

* before: a checkout without the change (torch threads = all cores, OpenMP's default wait);
  also with ``--threads 1``, the manual work-around the issue measured;
* after: this checkout (threads = CPUs not kept busy, ``OMP_WAIT_POLICY=PASSIVE``).

The defaults read the 1-minute load average, so each run starts ``--settle`` seconds after its
spinners (a real busy machine was busy before the command), and a run alone waits until the
load has fallen below 0.5 (at most ``--settle`` x 3 seconds). Conditions rotate per round, so a
slow drift of the machine falls on all alike. Run it on an otherwise quiet machine:

    uv run --frozen python benchmarks/threads_oversubscription.py --before /work/main --repeats 2 \\
        --out results/threads.md

Each checkout needs its own ``.venv`` (``uv sync``); ``effvit-nas`` is run from ROOT/.venv/bin.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import write_report

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["proxy", "M0", "--data", "synthetic", "--json"]


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:  # by PID: only what this script started
        p.kill()
        p.wait()


def wait_quiet(limit_s: float) -> None:
    t0 = time.time()
    while os.getloadavg()[0] > 0.5 and time.time() - t0 < limit_s:
        time.sleep(5)


def run_once(root: Path, extra: list[str], env: dict[str, str], timeout_s: float) -> dict:
    exe = root / ".venv" / "bin" / "effvit-nas"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        r = subprocess.run([str(exe), *COMMAND, *extra], capture_output=True, text=True, timeout=timeout_s, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "timed_out": True, "load_at_start": load}
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{exe} {' '.join(COMMAND + extra)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    out = json.loads(r.stdout)
    return {"wall_s": wall, "proxy_s": out.get("seconds"), "threads": out.get("threads"), "top1": out.get("value"), "load_at_start": load}


def conditions(before: Path | None, after: Path) -> dict[str, tuple[Path, list[str], dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = {}
    if before is not None:
        out["before (all cores)"] = (before, [], env)
        out["before --threads 1"] = (before, ["--threads", "1"], env)
    out["after (defaults)"] = (after, [], env)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=None, help="Checkout without the change (its .venv is used).")
    ap.add_argument("--after", type=Path, default=ROOT, help="Checkout with the change [default: this one].")
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="Busy processes beside the run.")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--settle", type=float, default=65.0, help="Seconds between starting the spinners and the run.")
    ap.add_argument("--timeout", type=float, default=900.0, help="Seconds before a run counts as timed out.")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "threads.md")
    args = ap.parse_args()
    conds = conditions(args.before, args.after)
    records = []
    for r in range(args.repeats):
        names = list(conds)
        names = names[r % len(names) :] + names[: r % len(names)]
        for busy in args.busy:
            for name in names:
                root, extra, env = conds[name]
                if busy == 0:
                    wait_quiet(3 * args.settle)
                procs = spinners(busy)
                try:
                    time.sleep(args.settle if busy else 0)
                    rec = {"round": r, "busy": busy, "condition": name, **run_once(root, extra, env, args.timeout)}
                finally:
                    stop(procs)
                records.append(rec)
                print(json.dumps(rec), flush=True)
    write(args, records)


def write(args: argparse.Namespace, records: list[dict]) -> None:
    cpus = len(os.sched_getaffinity(0))
    lines = [
        "# Train proxy beside busy processes: thread defaults before and after issue 45",
        "",
        f"`effvit-nas {' '.join(COMMAND)}` on {cpus} CPUs, median wall seconds over {args.repeats} round(s)",
        f"(threads the run used; load average at its start). Spinners started {args.settle:.0f} s before each run.",
        "",
        "    " + " ".join(["uv run --frozen python benchmarks/threads_oversubscription.py", *sys.argv[1:]]),
        "",
        "| condition | " + " | ".join(f"{b} busy" for b in args.busy) + " |",
        "|---" * (len(args.busy) + 1) + "|",
    ]
    for name in dict.fromkeys(r["condition"] for r in records):
        cells = []
        for b in args.busy:
            rs = [r for r in records if r["condition"] == name and r["busy"] == b]
            walls = [r["wall_s"] for r in rs if r["wall_s"] is not None]
            timed_out = len(rs) - len(walls)
            cell = f"{statistics.median(walls):.0f} s" if walls else "-"
            cell += f" ({timed_out} over {args.timeout:.0f} s)" if timed_out else ""
            threads = sorted({r.get("threads") for r in rs if r.get("threads") is not None})
            loads = ", ".join(f"{r['load_at_start']:.1f}" for r in rs)
            cells.append(f"{cell}; threads {threads or 'all'}; load {loads}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_report(args.out, "\n".join(lines), records)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
