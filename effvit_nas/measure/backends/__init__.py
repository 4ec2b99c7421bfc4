"""Backends: how a deployed (BN-fused) model runs while it is timed, one module per runtime.

Every backend has the same small interface (:class:`Backend`): whether it can run a device and
precision (:meth:`Backend.refusal`), its runtime's version (part of the protocol's store key,
:meth:`effvit_nas.measure.settings.BenchSettings.key`), what it was told (:meth:`Backend.describe`,
stated in every output) and :meth:`Backend.prepare`, which turns the model and an example batch
into a zero-argument call running that batch. Runtimes outside the base install are optional
dependency groups (``uv sync --extra openvino``); a backend whose runtime is missing is refused
with the command that installs it. This module imports no runtime, so the names and versions
are cheap to ask for (the driver computes store keys without torch).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from effvit_nas.measure.devices import DeviceError

if TYPE_CHECKING:
    from effvit_nas.measure.settings import BenchSettings

# name -> module under effvit_nas.measure.backends holding its class ``BACKEND``
_MODULES = {
    "eager": "pytorch",
    "trace": "pytorch",
    "compile": "pytorch",
    "onnxruntime": "ort",
    "openvino": "ov",
    "tensorrt": "trt",
    "executorch": "et",
}
NAMES = tuple(_MODULES)
TORCH_NATIVE = ("eager", "trace", "compile")  # their version is torch's, already in the device fingerprint

# How far a backend's logits may be from eager PyTorch's (fp32) on the same input, as a fraction
# of the largest |logit|: fp32 runtimes reorder sums (1e-3 leaves room for that, not for a wrong
# op); half precisions round every activation to 11 (fp16) or 8 (bf16) mantissa bits.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2}


@dataclass(frozen=True)
class Prepared:
    """A backend ready to time: ``forward()`` runs one batch and returns its output."""

    forward: Callable[[], Any]


class Backend:
    """One runtime. Subclasses set the class attributes and :meth:`prepare`; the defaults
    describe a runtime that is an optional dependency group."""

    name: ClassVar[str]
    module: ClassVar[str]  # what is imported to run it
    package: ClassVar[str]  # its distribution on PyPI (its version goes in the store key)
    extra: ClassVar[str | None] = None  # the optional dependency group that installs it

    def install_command(self) -> str:
        return f"uv sync --extra {self.extra}" if self.extra else f"uv add {self.package}"

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        """``package==version`` of the installed runtime (``package missing`` when absent)."""
        try:
            return f"{self.package}=={importlib.metadata.version(self.package)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{self.package} missing"

    def refusal(self, cuda: bool, precision: str) -> str | None:
        """Why this backend cannot run ``precision`` on a CUDA (``cuda``) or CPU device; None if it can."""
        return None

    def describe(self, settings: BenchSettings, cuda: bool) -> str:
        """What the runtime was told (version, hints, providers), for the output."""
        return self.version()

    def paired_caveat(self, settings: BenchSettings) -> str | None:
        """What ratio mode (timed alternately with an anchor) gets wrong for ``settings`` on
        this runtime, for a warning; None if nothing known."""
        return None

    def prepare(self, model: Any, x: Any, settings: BenchSettings, torch_device: str) -> Prepared:
        raise NotImplementedError


def get(name: str) -> Backend:
    """The backend called ``name`` (a SettingError-free lookup: names are checked by BenchSettings)."""
    return importlib.import_module(f"{__name__}.{_MODULES[name]}").BACKENDS[name]


def check(settings: BenchSettings, torch_device: str) -> Backend:
    """The backend of ``settings``, after checking it is installed and can run the device and
    precision; DeviceError (one line, exit 2 in the CLI) otherwise."""
    backend = get(settings.backend)
    if not backend.available():
        raise DeviceError(f"backend {backend.name} needs {backend.package}, which is not installed: run `{backend.install_command()}`")
    reason = backend.refusal(torch_device.startswith("cuda"), settings.precision)
    if reason:
        raise DeviceError(f"backend {backend.name} {reason}")
    return backend


def as_numpy(out: Any) -> Any:
    """A backend's output as a float32 numpy array (first output of a list, torch or numpy)."""
    import numpy as np  # lazy: numpy is not needed to name the backends, which every CLI start does

    if isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)


def compare_with_eager(name: str, got: Any, reference: Any, precision: str) -> None:
    """DeviceError when ``got`` (the backend's output) is not eager PyTorch's ``reference``
    within :data:`TOLERANCE` of ``precision``: a backend that computes something else is refused
    before it is timed."""
    import numpy as np  # lazy: numpy is not needed to name the backends, which every CLI start does

    got, reference = as_numpy(got), as_numpy(reference)
    tol = TOLERANCE[precision]
    scale = max(1.0, float(np.abs(reference).max()))
    err = float(np.abs(got - reference).max()) if got.shape == reference.shape else float("inf")
    if not err <= tol * scale:  # also refuses NaN
        shape = "" if got.shape == reference.shape else f" (shape {got.shape} against {reference.shape})"
        raise DeviceError(
            f"backend {name} computes something else than eager PyTorch on the same input: max |difference| {err:.3g} > "
            f"{tol:g} x max(1, max |logit|) = {tol * scale:.3g} ({precision}){shape}; refused"
        )
