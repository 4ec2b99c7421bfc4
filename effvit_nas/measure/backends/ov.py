"""OpenVINO (Intel/AMD x86 CPUs): the model converted by ``openvino.convert_model`` from the
torch module and compiled for the CPU plugin with the performance hint the runtime defines for
the metric (``THROUGHPUT`` for throughput, ``LATENCY`` for batch-1 latency), ``threads``
inference threads, and the inference precision explicit (OpenVINO would otherwise run bf16 on
CPUs that have it, even for an fp32 request)."""

from __future__ import annotations

import time
import warnings
from typing import Any

from effvit_nas.measure.backends import Backend, Prepared

_PRECISION = {"fp32": "f32", "bf16": "bf16"}
_SEND_TIMEOUT_S = 4.0  # openvino_telemetry ends a send after 3 s


def config(settings: Any) -> dict[str, str]:
    """The CPU plugin's properties for ``settings``."""
    return {
        "PERFORMANCE_HINT": "LATENCY" if settings.metric == "latency" else "THROUGHPUT",
        "INFERENCE_NUM_THREADS": str(settings.threads),
        "INFERENCE_PRECISION_HINT": _PRECISION[settings.precision],
    }


def decline_telemetry() -> None:
    """Turn off the usage telemetry OpenVINO's model converter sends for this process, and wait
    for the event ``import openvino`` already sent.

    ``convert_model`` sends several events per call from background threads, each in a new
    process that lives up to 3 s when the network does not answer. Those processes run on the
    CPU being timed, beside the timing loop: in a run that converted 36 models, OpenVINO's
    batch-1 latency of M0 came out at 30 ms instead of 5 ms (results/openvino_latency_check.md).
    The converter asks its telemetry singleton for consent before each send; declining it once,
    before the first conversion, keeps every later one silent. The import's own event is on its
    way by then (sent with the consent the import found): waiting for it (at most its 3 s, once
    per process) keeps its process off the first model's timing. OpenVINO turns telemetry off by
    itself where the environment says CI; a user's own choice (its ``opt_in_out`` tool) is not
    touched.
    """
    try:
        from openvino.tools.ovc.telemetry_utils import init_ovc_telemetry  # lazy: optional runtime, installed by its extra
        from openvino_telemetry import Telemetry  # lazy: installed with openvino
    except ImportError:  # a build without the converter's telemetry: nothing is sent
        return
    try:
        in_flight = Telemetry().sender  # the singleton as the import left it (no re-initialisation)
    except RuntimeError:  # not initialised: nothing was sent
        in_flight = None
    init_ovc_telemetry().consent = False
    deadline = time.monotonic() + _SEND_TIMEOUT_S
    while in_flight is not None and in_flight.queue_size > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


class OpenVino(Backend):
    name = module = package = extra = "openvino"

    def refusal(self, cuda: bool, precision: str) -> str | None:
        if cuda:
            return "runs on cpu only (OpenVINO's GPU plugin is for Intel GPUs)"
        return None if precision in _PRECISION else f"runs fp32 or bf16 on cpu, not {precision}"

    def describe(self, settings: Any, cuda: bool) -> str:
        return f"{self.version()}, " + ", ".join(f"{k}={v}" for k, v in config(settings).items())

    def paired_caveat(self, settings: Any) -> str | None:
        if settings.metric != "latency" or settings.pair_settle_s > 0:
            return None
        # results/openvino_latency_check.md, second finding; results/anchor_settle_cpu.md
        return (
            "OpenVINO batch-1 latency is biased in ratio mode without settling (each switch between two compiled "
            "models slows the next inferences); drop --pair-settle 0, or --no-anchor times it alone"
        )

    def prepare(self, model: Any, x: Any, settings: Any, torch_device: str) -> Prepared:
        import openvino as ov  # lazy: optional runtime, installed by its extra

        decline_telemetry()
        with warnings.catch_warnings():  # convert_model traces the module; its tracer warnings are expected
            warnings.simplefilter("ignore")
            converted = ov.convert_model(model, example_input=x)
        compiled = ov.Core().compile_model(converted, "CPU", config(settings))
        request = compiled.create_infer_request()  # one request: synchronous, as a deployed batch loop runs
        feed = x.numpy()

        def forward() -> Any:
            return request.infer({0: feed})[compiled.output(0)]

        return Prepared(forward)


BACKENDS = {"openvino": OpenVino()}
