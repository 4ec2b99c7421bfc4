"""How much of a timing process's memory lies on huge pages, with and without `--pages huge`?

For each backend, a fresh process started as the device actor is (with glibc's
``glibc.malloc.hugetlb=1`` tunable, or without it: ``--pages system``) enters the timing
context (malloc fixed, as `bench` does), builds M5 for batch-1 latency and reports its
anonymous memory and the part of it on transparent huge pages (``/proc/self/smaps_rollup``).
It checks that the setting reaches the memory that the weights and activations live in:

    uv run python benchmarks/huge_pages_share.py --backends onnxruntime,openvino,executorch,trace \\
        --out results/hugepages_cpu
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks._report import backends_arg, write_section

CHILD = """
import json, sys
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.heap import memory_kb
from effvit_nas.measure.timing import on_device, prepare

def kb():
    return dict(zip(("Anonymous", "AnonHugePages"), memory_kb(), strict=True))

s = BenchSettings.for_device("cpu", backend=sys.argv[1], metric="latency", pages=sys.argv[2])
with on_device(s, "cpu"):
    before = kb()
    model = prepare(PRESETS["M5"], s, "cpu", s.batch)
    print(json.dumps({"before": before, "after": kb()}))
"""


def one(backend: str, pages: str) -> dict[str, dict[str, int]]:
    from effvit_nas.measure.heap import timing_env

    out = subprocess.run([sys.executable, "-c", CHILD, backend, pages], capture_output=True, text=True, env=timing_env(pages), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="onnxruntime,openvino,executorch,trace")
    ap.add_argument("--out", type=Path, required=True, help="the report; this run is its section 'memory on huge pages'")
    args = ap.parse_args()
    rows = {f"{b}/{p}": one(b, p) for b in backends_arg(ap, args.backends) for p in ("system", "huge")}
    lines = [
        "# Memory on transparent huge pages in a timing process, by `--pages`",
        "",
        f"`uv run python benchmarks/huge_pages_share.py --backends {args.backends} --out {args.out}`",
        "",
        "After M5 is built for batch-1 latency in the timing context (malloc fixed). MB of anonymous memory.",
        "",
        "| backend | pages | anonymous MB | on huge pages MB | share |",
        "|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        b, p = key.split("/")
        anon, huge = r["after"]["Anonymous"] / 1024, r["after"]["AnonHugePages"] / 1024
        lines.append(f"| {b} | {p} | {anon:.0f} | {huge:.0f} | {100 * huge / anon:.0f} % |")
    write_section(args.out.with_suffix(".md"), "memory on huge pages", "Huge pages in a timing process", "\n".join(lines), rows)


if __name__ == "__main__":
    main()
