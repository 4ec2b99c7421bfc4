"""The backend registry: every CPU runtime computes what eager PyTorch computes, a missing
runtime is refused with the command that installs it, and the store key names the runtime."""

import importlib.util
from dataclasses import asdict

import pytest

from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.backends import NAMES, TOLERANCE, check, compare_with_eager, get
from effvit_nas.measure.devices import DeviceError
from effvit_nas.measure.settings import BenchSettings, protocol_key
from effvit_nas.measure.timing import check_supported, prepare
from tests.support import TINY

M0_64 = PRESETS["M0"].replace(img_size=64)
# The runtimes CI installs (.ci/run: --extra openvino --extra executorch), each cheap one in both
# metrics (batch 2 and batch 1) on M0; compile and executorch in one each, compile at batch 2 and
# executorch at batch 1 (as phones run it), on the tiny space's model: the same layers (stem,
# cascaded group attention, depthwise convs, FFNs, mergings) in a quarter of M0's attention heads,
# because their build time grows with the graph (ExecuTorch took 95 s for M0 on a busy 2-core
# machine). Besides the batch, only OpenVINO prepares differently per metric (its hint).
CASES = [(name, metric, M0_64) for name in ("eager", "trace", "onnxruntime", "openvino") for metric in ("throughput", "latency")]
CASES += [
    pytest.param(name, metric, TINY, marks=pytest.mark.slow) for name, metric in (("compile", "throughput"), ("executorch", "latency"))
]


def _eager(batch: int, config=M0_64):
    import torch

    from effvit_nas.model.efficientvit import build_model

    torch.manual_seed(0)  # as prepare builds it: same weights, same input
    model = build_model(config).eval().deploy()
    x = torch.randn(batch, 3, config.img_size, config.img_size)
    with torch.inference_mode():
        return model(x)


@pytest.mark.parametrize(("name", "metric", "config"), CASES, ids=lambda v: v if isinstance(v, str) else v.short_hash())
def test_each_cpu_backend_matches_eager(name, metric, config):
    backend = get(name)
    if not backend.available():
        pytest.fail(f"{name} is not installed here: run `{backend.install_command()}` (CI installs it)")
    batch = 1 if metric == "latency" else 2
    settings = BenchSettings(batch=batch, backend=name, metric=metric)
    check_supported(settings, "cpu")
    forward = prepare(config, settings, "cpu", batch)  # compares with eager itself, and refuses
    compare_with_eager(name, forward(), _eager(batch, config), "fp32")  # the output after prepare, once more
    assert backend.version().startswith(backend.package) and "missing" not in backend.version()


def test_a_backend_computing_something_else_is_refused():
    ref = _eager(2)
    compare_with_eager("trace", ref + 0.5 * TOLERANCE["fp32"], ref, "fp32")  # within tolerance
    with pytest.raises(DeviceError, match=r"backend trace computes something else .* 0.001 x .*fp32.*refused"):
        compare_with_eager("trace", ref + 10.0, ref, "fp32")
    with pytest.raises(DeviceError, match="shape"):
        compare_with_eager("trace", ref[:1], ref, "fp32")
    with pytest.raises(DeviceError):
        compare_with_eager("trace", ref * float("nan"), ref, "fp32")


def test_a_missing_runtime_names_the_command_that_installs_it():
    trt = get("tensorrt")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; its refusal is for machines without it")
    assert not trt.available() and trt.version() == "tensorrt missing"
    with pytest.raises(
        DeviceError, match=r"^backend tensorrt needs tensorrt-cu13, which is not installed: run `uv sync --extra tensorrt`$"
    ):
        check(BenchSettings(batch=2, backend="tensorrt", precision="fp16"), "cuda:0")


def test_backends_refuse_what_they_cannot_run():
    assert "NVIDIA GPUs only" in get("tensorrt").refusal(False, "fp32")
    assert "fp16 or fp32" in get("tensorrt").refusal(True, "bf16")
    assert get("tensorrt").refusal(True, "fp16") is None
    assert "cpu only" in get("openvino").refusal(True, "fp32")
    assert get("openvino").refusal(False, "bf16") is None
    assert "cpu only" in get("executorch").refusal(True, "fp32")
    assert "fp32 only" in get("onnxruntime").refusal(False, "bf16")
    with pytest.raises(DeviceError, match="backend onnxruntime runs fp32 only on cpu"):
        check(BenchSettings(batch=2, backend="onnxruntime", precision="bf16"), "cpu")


def test_the_store_key_names_backend_and_runtime_version():
    ort = BenchSettings(batch=16, backend="onnxruntime")
    version = get("onnxruntime").version()
    assert ort.runtime() == version and version.startswith("onnxruntime==")
    assert ort.key() == protocol_key(asdict(ort), version)
    assert ort.key() != protocol_key(asdict(ort), "onnxruntime==0.0.1")  # another version, another key
    assert len({BenchSettings(batch=16, backend=b).key() for b in NAMES}) == len(NAMES)
    # torch's own backends: torch's version is in the device fingerprint, and keys of figures
    # stored before metric/graph_opt/pair_estimator/pages existed stay what they were
    import hashlib
    import json

    trace = BenchSettings(batch=16)
    old = {k: v for k, v in asdict(trace).items() if k not in ("metric", "graph_opt", "pair_estimator", "pages")}
    assert trace.runtime() is None
    digest = lambda d: hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]  # noqa: E731
    # settled figures name their settling rule: the first rule's (a count fixed per process) are not found
    system = BenchSettings(batch=16, pages="system")
    assert system.key() == digest(old | {"settle_rule": "per-turn"}) and system.key() != digest(old)
    assert BenchSettings(batch=1, metric="latency").key() != BenchSettings(batch=1).key()
    # settling (0.3) changed the protocol: without it, a figure keeps the key it had before
    unsettled = {k: v for k, v in old.items() if k != "pair_settle_s"}
    assert BenchSettings(batch=16, pair_settle_s=0.0, pages="system").key() == digest(unsettled)
    assert BenchSettings(batch=16, pair_settle_s=0.0).key() != trace.key()
    # huge pages (the default since) changed the protocol too: a figure of the system's pages keeps its key
    assert trace.key() == digest(old | {"settle_rule": "per-turn", "pages": "huge"}) != system.key()


def test_openvino_latency_times_four_iterations_per_turn_by_default():
    """OpenVINO's batch-1 latency repeats within 2 % only with 4 iterations per ratio-mode turn
    (results/runtime_repeatability.md); every other backend and metric keeps 1, and a given
    count always wins. The default is part of the protocol, so of the store key."""
    ov = BenchSettings.for_device("cpu", backend="openvino", metric="latency")
    assert ov.pair_iters == 4 and BenchSettings.for_device("cpu", backend="openvino").pair_iters == 1
    assert BenchSettings.for_device("cpu", backend="trace", metric="latency").pair_iters == 1
    assert BenchSettings.for_device("cpu", backend="openvino", metric="latency", pair_iters=2).pair_iters == 2
    assert ov.key() != BenchSettings.for_device("cpu", backend="openvino", metric="latency", pair_iters=1).key()


def test_executorch_latency_times_the_whole_duration_by_default():
    """ExecuTorch's batch-1 ratio stopped early at ±1 % in one phase of the machine's speed, and
    the shortest stops were its extreme figures (results/build_spread_cpu.md): it times the
    whole --duration unless told otherwise; every other backend and metric keeps ±1 %."""
    et = BenchSettings.for_device("cpu", backend="executorch", metric="latency")
    assert et.ci_target == 0 and BenchSettings.for_device("cpu", backend="executorch").ci_target == 0.01
    assert BenchSettings.for_device("cpu", backend="openvino", metric="latency").ci_target == 0.01
    given = BenchSettings.for_device("cpu", backend="executorch", metric="latency", ci_target=0.02)
    assert given.ci_target == 0.02 and given.key() != et.key()


def test_latency_needs_batch_one():
    from effvit_nas.errors import SettingError

    with pytest.raises(SettingError, match=r"BenchSettings\.batch must be 1 for the latency metric"):
        BenchSettings(batch=16, metric="latency")
    assert BenchSettings.for_device("cpu", metric="latency").batch == 1


OV_TELEMETRY = """
import multiprocessing, os
import openvino
from openvino_telemetry import Telemetry
from effvit_nas.measure.backends.ov import decline_telemetry
sender = Telemetry().sender
print("import_event", sender.queue_size)
decline_telemetry()
print("in_flight", sender.queue_size)
from effvit_nas.arch.config import PRESETS
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import prepare
from openvino.tools.ovc.telemetry_utils import init_ovc_telemetry
prepare(PRESETS["M0"].replace(img_size=32), BenchSettings(batch=1, backend="openvino", metric="latency"), "cpu", 1)
t = init_ovc_telemetry()
print("consent", t.consent, "queued", t.sender.queue_size, "children", len(multiprocessing.active_children()))
"""


def test_openvino_sends_no_telemetry_while_models_are_timed(tmp_path):
    """Outside CI (where OpenVINO turns it off by itself) and with no opt-out file, the
    converter would send telemetry, each event in a process of its own beside the timing."""
    import os
    import subprocess
    import sys

    if not get("openvino").available():
        pytest.fail("openvino is not installed here: run `uv sync --extra openvino` (CI installs it)")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")} | {"HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", OV_TELEMETRY], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # the import's own event, sent before the backend could decline, is over before any timing
    assert r.stdout.split()[:4] == ["import_event", "1", "in_flight", "0"], r.stdout
    assert r.stdout.split()[-6:] == ["consent", "False", "queued", "0", "children", "0"], r.stdout


def test_latency_figures_are_the_anchors_time_plus_a_gap():
    """Every measured CPU backend's batch-1 figure is the anchor's stored time plus the gap
    between the two models' fast iterations (results/pair_estimators_cpu.md); throughput and the
    backends not measured so keep the ratio, and their keys are those stored before the
    setting existed."""
    import math

    from effvit_nas.measure.actor import paired_measurement
    from effvit_nas.measure.settings import RatioMeasurement

    et = BenchSettings.for_device("cpu", backend="executorch", metric="latency")
    assert et.pair_estimator == "gap" and BenchSettings.for_device("cpu", backend="executorch").pair_estimator == "ratio"
    assert BenchSettings.for_device("cpu", backend="executorch", metric="latency", pair_estimator="ratio").key() != et.key()
    for backend in ("onnxruntime", "openvino", "trace", "eager"):
        assert BenchSettings.for_device("cpu", backend=backend, metric="latency").pair_estimator == "gap"
    assert BenchSettings.for_device("cpu", backend="openvino", metric="latency").pair_iters == 4  # its own, kept beside the gap
    for kept in (BenchSettings.for_device("cpu", backend="compile", metric="latency"), BenchSettings.for_device("cpu")):
        assert kept.pair_estimator == "ratio"
        assert kept.key() == protocol_key({k: v for k, v in asdict(kept).items() if k != "pair_estimator"}, kept.runtime())

    def run(**kw) -> RatioMeasurement:
        fields = {"ratio": 0.6, "ci_low": 0.59, "ci_high": 0.61, "cv": 0.1, "pairs": 100, "disturbed": 0, "throughput": 250.0}
        return RatioMeasurement("c", "r", **fields, reference_throughput=400.0, batch=1, seconds=5.0, settings={}, device={}, **kw)

    # the anchor stored at 2.5 ms (400 img/s), the candidate 1.5 ms slower in its fast iterations
    m = paired_measurement(PRESETS["M1"], run(gap_s=0.0015, gap_low=0.0014, gap_high=0.0016), 400.0, "anchor M0")
    assert m.p50_ms == pytest.approx(4.0) and m.ci_low == pytest.approx(1 / 0.0041) and m.ci_high == pytest.approx(1 / 0.0039)
    assert "paired: +1.500 ms per batch on anchor M0" in m.note
    unsure = paired_measurement(PRESETS["M1"], run(gap_s=0.0015, gap_low=math.nan, gap_high=math.nan), 400.0)
    assert unsure.p50_ms == pytest.approx(4.0) and math.isnan(unsure.ci_low) and unsure.q1 == unsure.q3 == unsure.throughput
    # without a gap: the ratio times the anchor's figure, as before
    assert paired_measurement(PRESETS["M1"], run(), 400.0).throughput == pytest.approx(240.0)
