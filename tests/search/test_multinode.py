"""A real multi-node Ray cluster: two nodes started with `ray start` on this machine (the second
joined with `ray start --address`, labelled with a V100 it does not have), each with its own
device lock, as benchmarks/scaling.py runs them (unpinned here: this checks placement and
errors, not speed)."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from benchmarks.scaling import start_cluster, stop_cluster
from tests.support import TINY_SEARCH

PORT = 6395  # not the scaling benchmark's
CLAIMS_A_V100 = ["--num-gpus", "1", "--resources", '{"accelerator_type:V100": 1}']


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if (Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster").exists():
        pytest.skip("a Ray cluster started with `ray start` is recorded on this machine")
    work = tmp_path_factory.mktemp("cluster")
    try:
        yield start_cluster(work, PORT, ((), CLAIMS_A_V100), pin=False)
    finally:
        stop_cluster(work, PORT)


# the commands in one process (one interpreter start and one join)
_COMMANDS = """
import sys
from effvit_nas.cli import main
address, storage = sys.argv[1:3]
for command in sys.argv[3:]:
    try:
        main([*command.split(), "--ray-address", address, "--storage", storage])
    except SystemExit as e:
        print(f"exit {e.code}", file=sys.stderr, flush=True)
"""


def test_a_search_measures_on_both_nodes_and_a_gpu_a_node_lacks_is_named_in_one_line(cluster, tmp_path):
    """On the two nodes: a CPU search gets one device actor per node (the pool, placed by
    node) and finishes; then a search on the V100 the second node claims ends with one line
    naming that node (its host's IP and its id: both nodes share this host), exit 2, instead
    of hanging on an actor that never starts. (`bench` takes the same path: get_worker and
    check_on_worker.)"""
    search = [
        "search",
        *TINY_SEARCH,
        "--budget",
        "1",
        "--proxy",
        "macs",
        "--trials",
        "2",
        "--study",
        "m",
        "--json",
        "--quiet",
        "--no-anchor",
    ]
    v100 = ["--device", "v100", "--study", "v"]
    commands = [search, ["search", "--space", "tiny", "--budget", "10", "--trials", "1", *v100]]
    r = subprocess.run(
        [sys.executable, "-c", _COMMANDS, cluster, f"sqlite:///{tmp_path}/m.db", *(" ".join(c) for c in commands)],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
        timeout=300,
    )
    summary, _ = json.JSONDecoder().raw_decode(r.stdout[r.stdout.index("{") :])  # the v100 search prints its header after
    assert (summary["complete"], summary["failed"], summary["measure_actors"]) == (2, 0, 2), r.stderr[-3000:]
    assert re.fullmatch(r"2 device actors \(cpu: .+\) on 2 nodes", summary["measured_by"]), summary["measured_by"]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    line = r"error: device 'v100' is not available here; available: cpu \(.+\) \(Ray node [\d.]+, id [0-9a-f]{8}\)"
    assert len(lines) == 3 and lines[0::2] == ["exit 0", "exit 2"] and re.fullmatch(line, lines[1]), r.stderr
