"""PyTorch itself: ``eager``, ``trace`` (the paper's ``torch.jit.trace``) and ``compile``
(``torch.compile``); fp16/bf16 under autocast."""

from __future__ import annotations

import contextlib
from typing import Any

from effvit_nas.measure.backends import Backend, Prepared


def autocast(torch_device: str, precision: str) -> contextlib.AbstractContextManager:
    import torch  # lazy: torch costs seconds to import

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda" if torch_device.startswith("cuda") else "cpu", dtype=dtype)


class _PyTorch(Backend):
    module = package = "torch"

    def install_command(self) -> str:
        return "uv sync"

    def _wrap(self, model: Any, x: Any, settings: Any, torch_device: str) -> Any:
        return model

    def prepare(self, model: Any, x: Any, settings: Any, torch_device: str) -> Prepared:
        import torch  # lazy: torch costs seconds to import

        model = self._wrap(model, x, settings, torch_device)

        def forward() -> Any:
            with torch.inference_mode(), autocast(torch_device, settings.precision):
                return model(x)

        return Prepared(forward)


class Eager(_PyTorch):
    name = "eager"


class Trace(_PyTorch):
    name = "trace"

    def _wrap(self, model: Any, x: Any, settings: Any, torch_device: str) -> Any:
        from effvit_nas.model.deploy import trace_for_inference  # lazy: loads torch

        # the paper's plain trace, recorded under autocast so the casts are in the graph
        with autocast(torch_device, settings.precision):
            return trace_for_inference(model, x)


class Compile(_PyTorch):
    name = "compile"

    def _wrap(self, model: Any, x: Any, settings: Any, torch_device: str) -> Any:
        import torch  # lazy: torch costs seconds to import

        return torch.compile(model)


BACKENDS = {b.name: b for b in (Eager(), Trace(), Compile())}
