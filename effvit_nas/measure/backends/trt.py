"""TensorRT (NVIDIA GPUs, Jetson): the model exported to ONNX, parsed and built into an engine
by ``tensorrt`` (the runtime ``torch-tensorrt`` also builds on), fp16 (the paper's GPU
precision) or fp32, run with its input and output bound to torch's CUDA memory on torch's
current stream. Not yet verified on a GPU: written against TensorRT 10's Python API
(``build_serialized_network``, named tensor addresses, ``execute_async_v3``)."""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any

from effvit_nas.measure.backends import Backend, Prepared
from effvit_nas.measure.devices import DeviceError

_DISTRIBUTIONS = ("tensorrt-cu13", "tensorrt-cu12", "tensorrt")  # the wheels NVIDIA ships on PyPI
WORKSPACE = 4 << 30  # bytes TensorRT may use for tactics while building


class TensorRT(Backend):
    name = module = "tensorrt"
    package = "tensorrt-cu13"
    extra = "tensorrt"

    def version(self) -> str:
        for dist in _DISTRIBUTIONS:
            try:
                return f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
        return "tensorrt missing"

    def refusal(self, cuda: bool, precision: str) -> str | None:
        if not cuda:
            return "runs on NVIDIA GPUs only (use --device cuda)"
        return None if precision in ("fp16", "fp32") else f"builds fp16 or fp32 engines, not {precision}"

    def describe(self, settings: Any, cuda: bool) -> str:
        return f"{self.version()}, {settings.precision} engine from ONNX opset 17"

    def prepare(self, model: Any, x: Any, settings: Any, torch_device: str) -> Prepared:
        import torch  # lazy: torch costs seconds to import

        engine = _build(model, x, settings.precision == "fp16")
        context = engine.create_execution_context()
        with torch.inference_mode():
            out = torch.empty_like(model(x))
        # tensors named as export_onnx names them; fp32 at the engine's boundary, as the model's
        context.set_tensor_address("x", x.data_ptr())
        context.set_tensor_address("logits", out.data_ptr())

        def forward() -> Any:
            context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
            return out

        return Prepared(forward)


def _build(model: Any, x: Any, fp16: bool) -> Any:
    """A deserialised engine for ``model`` on inputs shaped as ``x``; DeviceError naming the
    parser's first error when TensorRT cannot take the ONNX graph."""
    import tensorrt as trt  # lazy: optional runtime, installed by its extra

    from effvit_nas.model.deploy import export_onnx  # lazy: loads torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10 networks are always explicit-batch (the flag is deprecated); 8.x needs it
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, x, str(path))
        if not parser.parse(path.read_bytes()):
            raise DeviceError(f"backend tensorrt cannot parse the model: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeviceError("backend tensorrt could not build an engine for this model (see TensorRT's log above)")
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


BACKENDS = {"tensorrt": TensorRT()}
