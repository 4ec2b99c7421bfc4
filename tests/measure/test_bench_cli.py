import json
import math
from dataclasses import replace

import pytest

from effvit_nas.errors import UserError
from effvit_nas.measure.backends import get
from effvit_nas.measure.settings import BenchSettings
from tests.support import FAST_BENCH, TINY, run_cli, run_main


@pytest.fixture
def tiny_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.to_yaml())
    return p


def test_bench_measures_then_reuses(tmp_path, tiny_file, capsys, monkeypatch, local_ray, cpu_worker):
    db = f"sqlite:///{tmp_path}/bench.db"
    timing = ["--warmup", str(FAST_BENCH["warmup_s"]), "--duration", str(FAST_BENCH["measure_s"]), "--window", str(FAST_BENCH["window_s"])]
    args = ["bench", str(tiny_file), "--device", "cpu", "--batch", "4", *timing, "--storage", db, "--no-anchor"]
    # End to end in a fresh process, joining this session's Ray as a cluster (so its device
    # actor measures, and no second Ray starts: ~10 s); the search's end-to-end test covers a
    # process starting its own local Ray.
    r = run_cli(*args, "--ray-address", local_ray.get_runtime_context().gcs_address, "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["throughput"] > 0 and j["cv"] >= 0 and j["batch"] == 4 and j["threads"] == 1
    assert j["precision"] == "fp32" and j["backend"] == "trace" and j["device"]["kind"] == "cpu"
    assert j["device"]["name"] and j["device"]["torch"] and j["cached"] is False
    assert j["windows"] >= 1 and 0 <= j["disturbed"] <= j["windows"] and "window_times" not in j

    # the cached path needs no Ray: neither a connection nor a device actor is asked for
    def no_ray(*a, **kw):
        raise AssertionError("a stored figure was measured again")

    monkeypatch.setattr("effvit_nas.measure.actor.connect", no_ray)
    monkeypatch.setattr("effvit_nas.measure.actor.get_worker", no_ray)
    r2 = run_main(capsys, *args)
    assert r2.returncode == 0, r2.stderr
    assert "cached" in r2.stdout and "batch 4, fp32, 1 thread(s), backend trace" in r2.stdout
    assert f"{j['throughput']:.1f}" in r2.stdout
    with pytest.raises(AssertionError, match="measured again"):  # positive control: the trap is live
        run_main(capsys, *args, "--fresh")
    monkeypatch.undo()

    both = json.loads(run_main(capsys, *args, "M0", "--fresh", "--backend", "eager", "--json").stdout)
    assert isinstance(both, list) and len(both) == 2 and not any(m["cached"] for m in both)

    # ratio mode: a model against itself, in alternating windows, comes out near 1x; not stored
    r3 = run_main(capsys, *args, "--relative-to", str(tiny_file))
    assert r3.returncode == 0, r3.stderr
    ratio = float(r3.stdout.split(f"{TINY.short_hash()}  ")[1].split("x")[0])
    assert 0.5 < ratio < 2 and "pairs" in r3.stdout


def test_anchored_figures_keep_the_stored_anchors_scale(tmp_path, tiny_file, capsys, local_ray):
    """--anchor: the anchor is measured 3 times once and stored; each CONFIG's figure is its
    ratio to the anchor (timed alternately) x that stored figure, kept on that scale; --fresh
    re-times the CONFIG on the same scale, --reanchor makes a new scale."""
    from effvit_nas.measure.anchor import anchor_key
    from effvit_nas.measure.store import MeasurementStore

    db = f"sqlite:///{tmp_path}/anchor.db"
    timing = ["--warmup", str(FAST_BENCH["warmup_s"]), "--duration", str(FAST_BENCH["measure_s"]), "--window", str(FAST_BENCH["window_s"])]
    args = ["bench", str(tiny_file), "--batch", "4", *timing, "--storage", db, "--anchor", "M0"]
    key = anchor_key(
        BenchSettings(batch=4, warmup_s=FAST_BENCH["warmup_s"], measure_s=FAST_BENCH["measure_s"], window_s=FAST_BENCH["window_s"])
    )

    def stored() -> tuple[list, list]:
        rows = [(k, m) for _, k, m in MeasurementStore(db).all()]
        return [m for k, m in rows if k == key], [m for k, m in rows if "-vs-" in k]

    r = run_main(capsys, *args)
    assert r.returncode == 0, r.stderr
    (anchor,), (figure,) = stored()
    assert "median of " in anchor.note and "measured now" in r.stdout  # of 3 that agree, or of 7 that do not
    ratio = float(figure.note.split("paired: ")[1].split("x anchor M0")[0])
    assert figure.throughput == pytest.approx(ratio * anchor.throughput, rel=1e-3)
    assert f"{figure.throughput:.1f} img/s" in r.stdout

    again = run_main(capsys, *args)
    assert "stored 20" in again.stdout and "cached" in again.stdout and f"{figure.throughput:.1f} img/s" in again.stdout
    fresh = json.loads(run_main(capsys, *args, "--fresh", "--json").stdout)
    (same_anchor,), (refigured,) = stored()
    assert same_anchor.throughput == anchor.throughput and fresh["cached"] is False
    assert refigured.throughput == pytest.approx(fresh["throughput"])

    assert run_main(capsys, *args, "--reanchor").returncode == 0
    (new_anchor,), figures = stored()
    assert new_anchor.throughput != anchor.throughput and len(figures) == 2  # the old scale's figure is kept, not reused


def test_a_gap_figure_is_the_anchors_time_plus_the_gap_and_says_so(tmp_path, tiny_file, capsys, local_ray):
    """`bench --metric latency` (on trace; every measured CPU backend's default is the gap): the
    figure is the stored anchor's ms plus the gap between the fast iterations, said in the
    protocol line and the note, and kept under its own key (`--pair-estimator ratio`'s figure
    is not reused)."""
    timing = ["--warmup", str(FAST_BENCH["warmup_s"]), "--duration", str(FAST_BENCH["measure_s"])]
    args = ["bench", str(tiny_file), "--metric", "latency", *timing, "--storage", f"sqlite:///{tmp_path}/g.db"]
    r = run_main(capsys, *args)
    assert r.returncode == 0, r.stderr
    assert "figure: the anchor's time plus the gap between the two models' fastest 5 % of iterations" in r.stdout
    anchor_ms = float(r.stdout.split("anchor M0: p50 ")[1].split(" ms")[0])
    j = json.loads(run_main(capsys, *args, "--pair-estimator", "gap", "--json").stdout)
    gap_ms = float(j["note"].split("paired: ")[1].split(" ms per batch on anchor M0")[0])
    assert j["cached"] and j["p50_ms"] == pytest.approx(anchor_ms + gap_ms, abs=0.011)  # both printed to 0.01 ms or 0.001 ms
    assert "started without GLIBC_TUNABLES" not in j["note"]  # Ray started the device actor with huge pages asked for
    ratio = json.loads(run_main(capsys, *args, "--pair-estimator", "ratio", "--json").stdout)
    assert not ratio["cached"] and "x anchor M0" in ratio["note"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--anchor", "M1", "--relative-to", "M2"], "exclude each other"),
        (["--no-anchor", "--reanchor"], "--no-anchor excludes"),
        (["--no-anchor", "--anchor", "M1"], "--no-anchor excludes"),
        (["--anchor", "M9"], "'M9' is neither a preset"),
    ],
)
def test_bench_anchor_bad_flags(tmp_path, capsys, extra, needle):
    r = run_main(capsys, "bench", "M0", "--storage", f"sqlite:///{tmp_path}/x.db", *extra)
    assert r.returncode == 2 and r.stdout == "" and needle in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x.db").exists()  # nothing left behind by a typo


@pytest.mark.parametrize(
    "flags, protocol",
    [
        (["--backend", "compile"], ("compile", "fp32")),
        (["--backend", "onnxruntime"], ("onnxruntime", "fp32")),
        (["--precision", "bf16"], ("trace", "bf16")),
    ],
)
def test_bench_backend_and_precision_flags_reach_the_measurement(tmp_path, tiny_file, capsys, monkeypatch, flags, protocol):
    """Only the flags' way to the measurement: through the CLI a cold torch.compile takes ~30 s
    on these CPUs, an ONNX export or a bf16 trace ~10 s, and test_throughput.py measures all
    three through the library."""
    seen = []

    def fake_measure_configs(cfgs, device, settings, store, **kw):
        seen.append(settings)
        raise UserError("stop here")

    monkeypatch.setattr("effvit_nas.measure.actor.measure_configs", fake_measure_configs)
    r = run_main(capsys, "bench", str(tiny_file), *flags, "--no-anchor", "--storage", f"sqlite:///{tmp_path}/b.db")
    assert r.returncode == 2 and [(s.backend, s.precision, s.threads) for s in seen] == [(*protocol, 1)]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--device", "v100"], "not available"),
        (["--device", "cuda:7"], "not available"),
        (["--device", "quantum computer"], "unknown device"),
        (["--batch", "0"], "--batch must be positive"),
        (["--precision", "fp16"], "fp16 is not supported on cpu"),
        (["--precision", "int4"], "--precision"),
        (["--backend", "tensorrt"], "backend tensorrt needs tensorrt-cu13, which is not installed: run `uv sync --extra tensorrt`"),
        (["--backend", "tvm"], "--backend"),
        (["--metric", "latency", "--batch", "4"], "--batch must be 1 for the latency metric"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "fp32 only"),
        (["--storage", "bogus"], "invalid storage URL"),
    ],
)
def test_bench_bad_input(tmp_path, capsys, extra, needle):
    storage = [] if "--storage" in extra else ["--storage", f"sqlite:///{tmp_path}/x.db"]
    r = run_main(capsys, "bench", "M0", *storage, *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra", [["--backend", "tensorrt"], ["--backend", "onnxruntime", "--precision", "bf16"]])
def test_bench_refuses_a_backend_before_the_store(tmp_path, capsys, extra):
    r = run_main(capsys, "bench", "M0", "--storage", f"sqlite:///{tmp_path}/x.db", *extra)
    assert r.returncode == 2 and r.stderr.startswith("error: backend")
    assert not (tmp_path / "x.db").exists()  # nothing created for a run that never started


def test_bench_names_the_threads_flag(tmp_path, capsys, local_ray):
    """The library names BenchSettings.threads; the CLI says which flag set it."""
    cpus = int(local_ray.cluster_resources()["CPU"])
    r = run_main(capsys, "bench", "M0", "--threads", str(cpus + 1), "--storage", f"sqlite:///{tmp_path}/x.db")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: --threads {cpus + 1} is more than the {cpus} CPUs Ray can give one worker"


def test_bench_at_a_dead_ray_address_is_one_line(tmp_path, tiny_file):
    """In a fresh process (a test process already has Ray initialised): nothing listens on the
    port, so the run stops before Ray retries the address for a minute."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("bench", str(tiny_file), "--device", "cpu", "--storage", f"sqlite:///{tmp_path}/b.db", "--ray-address", f"127.0.0.1:{port}")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in r.stderr


# A wrong token (the other cause, "the cluster refused this process's token") takes Ray's client
# ~20 s of retries to give up: checked by hand (issue notes), too slow for the suite.
def test_joining_a_token_cluster_without_its_token_says_so_in_one_line(tmp_path, tiny_file, local_ray):
    """The session's Ray has token authentication on (Ray 2.60's default); a fresh process whose
    home holds no token is refused: one line naming the cause and the fix, instead of Ray's
    traceback."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")} | {"HOME": str(home), "RAY_AUTH_MODE": "token"}
    address = local_ray.get_runtime_context().gcs_address
    args = ["bench", str(tiny_file), "--device", "cpu", "--storage", f"sqlite:///{tmp_path}/b.db", "--ray-address", address]
    r = subprocess.run([sys.executable, "-m", "effvit_nas.cli", *args], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "this process has no token" in r.stderr and "~/.ray/auth_token" in r.stderr


def test_latency_is_anchored_by_default_with_p50_and_p90(tmp_path, tiny_file, capsys, local_ray):
    """`bench --metric latency`: batch 1, anchored on M0 at the config's resolution by default,
    p50 and p90 in ms with the runtime's hint stated; --no-anchor gives a plain figure with
    both intervals."""
    timing = ["--warmup", str(FAST_BENCH["warmup_s"]), "--duration", str(FAST_BENCH["measure_s"]), "--window", str(FAST_BENCH["window_s"])]
    args = ["bench", str(tiny_file), "--metric", "latency", "--backend", "openvino", *timing, "--storage", f"sqlite:///{tmp_path}/l.db"]
    r = run_main(capsys, *args)
    assert r.returncode == 0, r.stderr
    assert "anchor M0: p50 " in r.stdout and "PERFORMANCE_HINT=LATENCY" in r.stdout and "batch 1," in r.stdout
    assert "ms" in r.stdout and "paired:" in r.stdout
    assert "timed in alternating turns (each 10 ms untimed" in r.stdout and "biased" not in r.stderr
    assert "turns settled " in r.stdout  # a tiny model's sub-ms iterations: settled, and said so
    j = json.loads(run_main(capsys, *args, "--json").stdout)  # stored on the anchor's scale: reused
    assert j["cached"] and j["metric"] == "latency" and j["batch"] == 1
    assert j["p50_ms"] == pytest.approx(1e3 / j["throughput"]) and j["p90_ms"] > 0
    plain = json.loads(run_main(capsys, *args, "--no-anchor", "--json").stdout)
    assert not plain["cached"] and plain["batch"] == 1
    # an interval where at least 6 undisturbed windows give one (NaN otherwise, "n/a" in the output)
    assert math.isnan(plain["p50_low"]) or plain["p50_low"] <= plain["p50_ms"] <= plain["p50_high"]
    # each window's p90 is at least its median, so the median of the p90s is at least the p50
    assert plain["p90_ms"] >= plain["p50_ms"]
    # the protocol before 0.3 is warned about (before anything is measured: its anchor is not timed here)
    unsettled = BenchSettings(batch=1, backend="openvino", metric="latency", pair_settle_s=0.0)
    assert "biased in ratio mode without settling" in (get("openvino").paired_caveat(unsettled) or "")
    assert get("openvino").paired_caveat(replace(unsettled, pair_settle_s=0.01)) is None


@pytest.mark.parametrize(
    ("figures", "kept", "agree"),
    [
        ([100.0, 101.0, 99.5], 100.0, True),  # the usual case: 3 runs, no more
        ([100.0, 80.0, 120.0, 101.0, 99.0], 100.0, True),  # two stray runs, then 3 that agree
        ([100.0, 80.0, 120.0, 90.0, 110.0, 70.0, 130.0], 100.0, False),  # never: the median of all 7, said so
    ],
)
def test_an_anchor_is_kept_once_its_runs_agree(figures, kept, agree):
    """OpenVINO's batch-1 anchor once spread 13-21 % over 3 runs and every figure on its
    scale carried that error: runs go on until 3 agree within 3 %, up to 7."""
    from effvit_nas.measure.anchor import agreeing_runs
    from effvit_nas.measure.settings import Measurement

    queue = list(figures)

    def once() -> Measurement:
        t = queue.pop(0)
        return Measurement(
            config_hash="a", throughput=t, q1=t, q3=t, cv=0.0, iterations=9, batch=1, seconds=1.0, settings={}, device={}, config={}
        )

    m, how = agreeing_runs(once)
    assert m.throughput == kept and not queue  # measured no more runs than it needed
    assert ("agreeing within" in how) is agree and (f"median of {len(figures)} measurements" in how) is not agree


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs two usable cores to narrow one process to one")
def test_an_anchor_measured_by_an_actor_with_another_affinity_is_refused_in_one_line(tmp_path, local_ray):
    """A device actor started with other usable cores than this process has another device
    fingerprint: the anchor it measures would be stored where this process never finds it (it
    raised 'cannot be read back' with a traceback, once, after a watchdog re-pinned processes)."""
    import os

    from effvit_nas.measure.actor import LazyWorker, check_local
    from effvit_nas.measure.anchor import anchor_figure
    from effvit_nas.measure.devices import DeviceError
    from effvit_nas.measure.store import MeasurementStore

    settings = BenchSettings(batch=1, **FAST_BENCH)
    worker = LazyWorker("cpu", settings)
    worker()  # the actor starts with this process's cores
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        here = check_local("cpu", settings)["id"]
    finally:
        os.sched_setaffinity(0, cores)
    store = MeasurementStore(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(DeviceError, match=f"but this process is {here}: start them with the same CPU affinity"):
        anchor_figure(TINY, here, settings, store, worker)
    worker.release()
