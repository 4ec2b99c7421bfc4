"""ExecuTorch with the XNNPACK delegate (the mobile/ARM CPU runtime), timed on this CPU: the
model exported by ``torch.export``, lowered with the XNNPACK partitioner, and run by the
ExecuTorch runtime's Python bindings. fp32, CPU only. The runtime's thread pool (XNNPACK's
threads) is set to ``threads`` through the bindings' experimental ``_unsafe_reset_threadpool``,
and refused when it does not take (the paper's CPU protocol is 1 thread)."""

from __future__ import annotations

from typing import Any

from effvit_nas.measure.backends import Backend, Prepared
from effvit_nas.measure.devices import DeviceError


class ExecuTorch(Backend):
    name = module = package = extra = "executorch"

    def refusal(self, cuda: bool, precision: str) -> str | None:
        if cuda:
            return "runs on cpu only (XNNPACK delegate)"
        return None if precision == "fp32" else f"runs fp32 only, not {precision}"

    def describe(self, settings: Any, cuda: bool) -> str:
        return f"{self.version()}, XNNPACK delegate, thread pool of {settings.threads}"

    def prepare(self, model: Any, x: Any, settings: Any, torch_device: str) -> Prepared:
        import torch  # lazy: torch costs seconds to import
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )  # lazy: optional runtime
        from executorch.exir import to_edge_transform_and_lower  # lazy: optional runtime
        from executorch.runtime import Runtime  # lazy: optional runtime

        _set_threads(settings.threads)
        exported = torch.export.export(model, (x,))
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        buffer = lowered.buffer
        program = Runtime.get().load_program(buffer)
        method = program.load_method("forward")
        inputs = [x]

        def forward() -> Any:
            # the method points into the program and its buffer: they must live as long as it
            # does (a method whose program was collected segfaults on execute)
            _ = (program, buffer)
            return method.execute(inputs)

        return Prepared(forward)


def _set_threads(threads: int) -> None:
    """The ExecuTorch thread pool (the one XNNPACK runs on) at ``threads``; DeviceError if it
    does not take (the API is experimental: a release may drop or change it)."""
    from executorch.extension.pybindings.portable_lib import (
        _threadpool_get_thread_count,
        _unsafe_reset_threadpool,
    )  # lazy: optional runtime

    _unsafe_reset_threadpool(threads)
    if _threadpool_get_thread_count() != threads:
        raise DeviceError(f"backend executorch runs {_threadpool_get_thread_count()} threads, not the {threads} asked for")


BACKENDS = {"executorch": ExecuTorch()}
