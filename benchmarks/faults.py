"""Fault injection (issue 45): what a user sees when the device actor dies, the database turns
read-only or the disk fills up mid-run, and that nothing already stored is lost
(results/faults.md).

Each probe runs the real command line (`effvit-nas` from this checkout's .venv) on tiny work
(`search --space tiny --trials 6 --proxy macs`), injects the fault once a trial is stored,
reads the study straight from SQLite before and after, and runs the same command again to
show the recovery. Needs root (tmpfs mounts, `chattr +i`); it is a correctness probe,
not a timing, and it is not part of the test suite:

    sudo .venv/bin/python benchmarks/faults.py --out results/faults.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks._report import write_report

ROOT = Path(__file__).resolve().parent.parent
EXE = str(ROOT / ".venv" / "bin" / "effvit-nas")
SEARCH = ["search", "--device", "cpu", "--budget", "100", "--space", "tiny", "--trials", "6", "--proxy", "macs", "--quiet"]


def search_cmd(db: Path, study: str) -> list[str]:
    return [EXE, *SEARCH, "--storage", f"sqlite:///{db}", "--study", study]


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)


def finish(p: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # its own session: this probe's processes only
        out, err = p.communicate()
        err += "\n(probe: killed after its timeout)"
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def trials(db: Path) -> dict[int, tuple[str, tuple]]:
    """number -> (state, objective values) of every trial, read with sqlite3 as the next
    command would (read-write: a write the fault cut short is rolled back from its journal)."""
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(db)) as c:
            rows = c.execute(
                "SELECT t.number, t.state, v.objective, v.value FROM trials t LEFT JOIN trial_values v USING (trial_id)"
            ).fetchall()
    except sqlite3.Error:
        return {}
    out: dict[int, tuple[str, tuple]] = {}
    for number, state, objective, value in rows:
        s, values = out.get(number, (state, ()))
        out[number] = (s, (*values, (objective, value)) if objective is not None else values)
    return {n: (s, tuple(sorted(v))) for n, (s, v) in out.items()}


def complete(db: Path) -> dict[int, tuple]:
    return {n: v for n, (s, v) in trials(db).items() if s == "COMPLETE"}


def wait_for(predicate, timeout: float = 300, step: float = 0.2) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return True
        time.sleep(step)
    return False


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Write zeros until the file system is full."""
    subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'fill'}", "bs=4k"], capture_output=True)


def seen(r: subprocess.CompletedProcess) -> str:
    err = [line for line in r.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("error:")]
    shown = errors[-1] if errors else (err[-1] if err else "(nothing on stderr)")
    trace = " (a traceback)" if "Traceback" in r.stderr else ""
    return f"exit {r.returncode}, {len(errors)} `error:` line(s){trace}: `{shown[:400]}`"


def kept(before: dict[int, tuple], after: dict[int, tuple]) -> str:
    lost = [n for n in before if after.get(n) != before[n]]
    return f"{len(before)} complete trial(s) stored before the fault; " + (
        "all still complete with the same values after" if not lost else f"LOST or changed: {lost}"
    )


def probe_actor_killed(work: Path) -> dict:
    db = work / "actor.db"
    p = start(search_cmd(db, "actor"))
    wait_for(lambda: complete(db))
    before = complete(db)
    actors = [c for c in descendants(p.pid) if "DeviceWorker" in cmdline(c)]
    for pid in actors:
        os.kill(pid, signal.SIGKILL)
    r = finish(p)
    after = complete(db)
    return {
        "name": "device actor killed mid-search",
        "steps": f"`{' '.join(search_cmd(db, 'actor'))}`; once a trial is stored, SIGKILL the search's DeviceWorker process(es) {actors}",
        "seen": seen(r) + f"; {len(after)} of 6 trials complete at the end",
        "kept": kept(before, after),
    }


def probe_read_only(work: Path) -> dict:
    # root ignores file modes and a file system with the database open for writing cannot be
    # remounted read-only; the immutable attribute stops root's writes, through open files too
    db = work / "ro.db"
    p = start(search_cmd(db, "ro"))
    wait_for(lambda: complete(db))
    subprocess.run(["chattr", "+i", str(db)], check=True)
    before = complete(db)
    try:
        r = finish(p)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    middle = complete(db)  # read once writable: SQLite rolls back the write the fault cut short
    again = run(search_cmd(db, "ro"))
    after = complete(db)
    return {
        "name": "database file made read-only mid-search",
        "steps": f"`{' '.join(search_cmd(db, 'ro'))}`; once a trial is stored, `chattr +i {db}` (read-only even for root, "
        "also through the search's open file); then `chattr -i` and run the same command again",
        "seen": seen(r),
        "kept": kept(before, middle),
        "recovery": seen(again) + f"; {len(after)} of 6 trials complete; " + kept(before, after),
    }


def probe_disk_full_search(work: Path) -> dict:
    with tmpfs(work / "full", "2m") as m:
        db = m / "full.db"
        p = start(search_cmd(db, "full"))
        wait_for(lambda: complete(db))
        fill(m)
        before = complete(db)
        r = finish(p)
        middle = complete(db)
        (m / "fill").unlink()
        again = run(search_cmd(db, "full"))
        after = complete(db)
        export = probe_export(work, db)
    return {
        "name": "disk filled during a search",
        "steps": f"the study database on a 2 MB tmpfs; `{' '.join(search_cmd(db, 'full'))}`; once a trial is stored, "
        "fill the tmpfs with `dd if=/dev/zero`; then delete the filler and run the same command again",
        "seen": seen(r),
        "kept": kept(before, middle),
        "recovery": seen(again) + f"; {len(after)} of 6 trials complete; " + kept(before, after),
    }, export


def probe_export(work: Path, db: Path) -> dict:
    before = trials(db)
    with tmpfs(work / "exp", "256k") as m:
        (m / "earlier.txt").write_text("an earlier file\n")
        fill(m)
        cmd = [EXE, "export", "--study", "full", "--storage", f"sqlite:///{db}", "--out", str(m / "models"), "--pareto"]
        r = run(cmd)
        (m / "fill").unlink()
        again = run(cmd)
        ok = (m / "earlier.txt").read_text() == "an earlier file\n"
        index = json.loads((m / "models" / "index.json").read_text()) if (m / "models" / "index.json").exists() else {}
    after = trials(db)
    return {
        "name": "disk filled during an export",
        "steps": f"the export folder on a full 256 KB tmpfs: `{' '.join(cmd)}`; then free the space and export again",
        "seen": seen(r),
        "kept": ("the study is unchanged" if before == after else "the study CHANGED")
        + ("; the file already in the folder is intact" if ok else "; the file already in the folder was DAMAGED"),
        "recovery": seen(again) + f"; index.json lists {len(index.get('models', []))} model(s)",
    }


def probe_train_checkpoint(work: Path) -> dict:
    with tmpfs(work / "ckpt", "2m") as m:
        (m / "earlier.txt").write_text("an earlier file\n")
        cmd = [EXE, "train", "M0", "--data", "synthetic", "--img-size", "32", "--classes", "2", "--train-per-class", "8"]
        cmd += ["--val-per-class", "4", "--epochs", "1", "--batch", "8", "--quiet", "--out", str(m / "o")]
        r = run(cmd, timeout=900)
        left = sorted(str(p.relative_to(m)) for p in m.rglob("*"))
        ok = (m / "earlier.txt").read_text() == "an earlier file\n"
    return {
        "name": "disk filled while training writes its checkpoint",
        "steps": f"the output folder on a 2 MB tmpfs (M0's weights, EMA and optimizer state need ~35 MB): `{' '.join(cmd)}`",
        "seen": seen(r),
        "kept": ("the file already on the disk is intact" if ok else "the file already on the disk was DAMAGED")
        + f"; left on the disk: {left}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "faults.md")
    ap.add_argument("--only", nargs="*", default=None, help="Probe names to run (actor, readonly, full, train).")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the probes mount tmpfs file systems")
    probes = []
    with tempfile.TemporaryDirectory(prefix="effvit-faults-") as tmp:
        work = Path(tmp)
        wanted = set(args.only or ["actor", "readonly", "full", "train"])
        if "actor" in wanted:
            probes.append(probe_actor_killed(work))
        if "readonly" in wanted:
            probes.append(probe_read_only(work))
        if "full" in wanted:
            probes.extend(probe_disk_full_search(work))
        if "train" in wanted:
            probes.append(probe_train_checkpoint(work))
        shown = [{k: v.replace(EXE, "effvit-nas").replace(str(work), "$TMP") for k, v in p.items()} for p in probes]
    write(args.out, shown)


def write(path: Path, probes: list[dict]) -> None:
    lines = [
        "# Fault injection: what the user sees, and what stays stored",
        "",
        "Regenerated by `sudo .venv/bin/python benchmarks/faults.py --out results/faults.md` (root: tmpfs mounts).",
        "Each study is read straight from SQLite before the fault and after it.",
        "",
    ]
    for p in probes:
        lines += [f"## {p['name']}", "", f"- steps: {p['steps']}", f"- the user sees: {p['seen']}", f"- stored: {p['kept']}"]
        if "recovery" in p:
            lines.append(f"- the same command again: {p['recovery']}")
        lines.append("")
    write_report(path, "\n".join(lines), probes)
    print(path.read_text())


if __name__ == "__main__":
    main()
