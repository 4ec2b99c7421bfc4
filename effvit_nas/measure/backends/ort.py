"""ONNX Runtime: the model exported to ONNX (opset 17), run by an InferenceSession whose graph
optimisation level (``BenchSettings.graph_opt``) and execution provider are explicit: CPU on a
CPU; on a GPU the TensorRT provider where installed (fp16 or fp32), else the CUDA provider (fp32).
The GPU paths are not yet verified on a GPU."""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any

from effvit_nas.measure.backends import Backend, Prepared

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def provider(cuda: bool, precision: str) -> str | None:
    """The execution provider for the device and precision (None: none installed can)."""
    import onnxruntime as ort  # lazy: loads the runtime's native libraries; naming the backend needs none

    have = ort.get_available_providers()
    if not cuda:
        return "CPUExecutionProvider" if precision == "fp32" else None
    if "TensorrtExecutionProvider" in have and precision in ("fp32", "fp16"):
        return "TensorrtExecutionProvider"
    return "CUDAExecutionProvider" if "CUDAExecutionProvider" in have and precision == "fp32" else None


class OnnxRuntime(Backend):
    name = module = package = "onnxruntime"

    def install_command(self) -> str:
        return "uv sync"

    def version(self) -> str:
        for dist in ("onnxruntime", "onnxruntime-gpu"):  # the GPU build is another distribution
            try:
                return f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
        return "onnxruntime missing"

    def refusal(self, cuda: bool, precision: str) -> str | None:
        if provider(cuda, precision) is not None:
            return None
        if not cuda:
            return f"runs fp32 only on cpu, not {precision}"
        return (
            f"has no execution provider for {precision} on cuda: install onnxruntime-gpu (CUDA provider, fp32) "
            "with TensorRT (TensorRT provider, fp16/fp32)"
        )

    def describe(self, settings: Any, cuda: bool) -> str:
        return f"{self.version()}, {provider(cuda, settings.precision)}, graph optimisation {LEVELS[settings.graph_opt]}"

    def prepare(self, model: Any, x: Any, settings: Any, torch_device: str) -> Prepared:
        import onnxruntime as ort  # lazy: loads the runtime's native libraries; naming the backend needs none

        from effvit_nas.model.deploy import export_onnx  # lazy: loads torch

        cuda = torch_device.startswith("cuda")
        chosen = provider(cuda, settings.precision)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, x, str(path))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = settings.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[settings.graph_opt])
            options = {"trt_fp16_enable": settings.precision == "fp16"} if chosen == "TensorrtExecutionProvider" else {}
            if cuda:
                options["device_id"] = _index(torch_device)
            session = ort.InferenceSession(str(path), opts, providers=[(chosen, options)])
        if not cuda:
            feed = {"x": x.numpy()}
            return Prepared(lambda: session.run(None, feed))
        return Prepared(_bound(session, model, x, _index(torch_device)))


def _index(torch_device: str) -> int:
    return int(torch_device.partition(":")[2] or 0)


def _bound(session: Any, model: Any, x: Any, index: int) -> Any:
    """A run on GPU with input and output bound to torch's CUDA memory (no host copies, as a
    deployed GPU pipeline would run). Not yet verified on a GPU."""
    import numpy as np  # lazy: with torch, below
    import torch  # lazy: torch costs seconds to import

    with torch.inference_mode():
        out = torch.empty_like(model(x))
    binding = session.io_binding()
    binding.bind_input("x", "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
    binding.bind_output("logits", "cuda", index, np.float32, tuple(out.shape), out.data_ptr())

    def forward() -> Any:
        session.run_with_iobinding(binding)
        return out

    return forward


BACKENDS = {"onnxruntime": OnnxRuntime()}
