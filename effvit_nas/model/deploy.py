"""Turning a built model into the form that is timed and shipped.

The paper times ``torch.jit.trace`` of the conv+BN-fused model, and so does the ``trace``
backend. ``optimize=True`` additionally freezes the trace and runs TorchScript's
``optimize_for_inference`` (oneDNN weight prepacking, layout conversions around each
attention). It is exact, but on this CPU its speed depends on process history: the same
M0 module ran at ~430 or ~600 img/s depending on whether a plain aten convolution had run
after it was built (results/model_speed_cpu.md), so it is never used for measurements.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn as nn


@torch.no_grad()
def trace_for_inference(model: nn.Module, example: torch.Tensor, optimize: bool = False) -> torch.jit.ScriptModule:
    """Trace ``model`` (already in deployment form, eval mode) on ``example``.

    With ``optimize`` the trace is frozen and passed through ``optimize_for_inference``.
    The result only accepts inputs of the example's shape, dtype and device.
    """
    model.eval()
    with warnings.catch_warnings():
        # torch>=2.10 marks jit.trace deprecated; it is still the paper's protocol.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # No check_trace: torch's check traces twice more and compares the graphs, several
        # seconds per call for a large model (more than a short measurement); the deployment
        # tests compare the traced outputs with eager mode instead.
        traced = torch.jit.trace(model, example, check_trace=False)
        if optimize:
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return traced


@torch.no_grad()
def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic_batch: bool = False) -> None:
    """Write ``model`` (deployment form, eval mode) as ONNX (opset 17, TorchScript exporter:
    the dynamo exporter needs onnxscript features this model's reshapes do not map to).
    Input ``x``, output ``logits``; the batch axis is symbolic with ``dynamic_batch``."""

    model.eval()
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), path, dynamo=False, opset_version=17, input_names=["x"], output_names=["logits"], dynamic_axes=axes
        )
