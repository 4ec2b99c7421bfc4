"""Target devices: parsing what the user typed, finding it, and fingerprinting it.

Accepted device strings:

* ``cpu``; ``cuda`` (first GPU) or ``cuda:N``; ``auto`` (first GPU if any, else CPU);
* a GPU name such as ``v100``, ``a100``, ``h100``, ``t4``: a CUDA device whose name contains it
  (case-insensitive), on this machine or, when connected to a Ray cluster, on a node whose Ray
  accelerator type matches (``accelerator_type:V100`` resources).

A fingerprint identifies the hardware + software a number was measured on (CPU model and
cores, or GPU name, driver and CUDA; torch version). Measurements are keyed by it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from effvit_nas.errors import UserError

_NAME_RE = re.compile(r"[a-z][a-z0-9_\-]*")


class DeviceError(UserError):
    """The requested device does not exist or cannot run the requested setting."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device request (not yet resolved to hardware).

    Attributes:
        kind: ``cpu``, ``cuda`` (``cuda``/``cuda:N``/named GPU) or ``auto``.
        index: CUDA index for ``cuda:N``; None otherwise.
        name: lower-case GPU name pattern for named devices (``v100``); None otherwise.
    """

    raw: str
    kind: str
    index: int | None = None
    name: str | None = None

    @property
    def ray_accelerator_type(self) -> str | None:
        """Ray's accelerator type for a named GPU (``v100`` -> ``V100``)."""
        return self.name.upper() if self.name else None


def parse_device(text: str) -> DeviceSpec:
    s = text.strip().lower()
    if s in ("cpu", "auto", "cuda"):
        return DeviceSpec(text, s)
    m = re.fullmatch(r"cuda:(\d+)", s)
    if m:
        return DeviceSpec(text, "cuda", index=int(m.group(1)))
    if _NAME_RE.fullmatch(s) and any(c.isdigit() for c in s):
        return DeviceSpec(text, "cuda", name=s)
    raise DeviceError(f"unknown device {text!r}: use cpu, cuda, cuda:N, auto or a GPU name such as v100, a100, h100")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def local_devices() -> list[tuple[str, str]]:
    """(torch device, human name) of everything this process can use."""
    import torch  # lazy: torch costs seconds to import

    out = [("cpu", cpu_model())]
    if torch.cuda.is_available():
        out += [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
    return out


def describe_available(devices: list[tuple[str, str]], ray_types: list[str] | None = None) -> str:
    items = [f"{d} ({n})" for d, n in devices]
    if ray_types:
        items.append("Ray accelerator types: " + ", ".join(ray_types))
    return "; ".join(items)


def resolve_local(spec: DeviceSpec) -> str:
    """The torch device string on this machine for ``spec``; DeviceError if none matches."""
    devices = local_devices()
    gpus = [(d, n) for d, n in devices if d.startswith("cuda")]
    if spec.kind == "cpu":
        return "cpu"
    if spec.kind == "auto":
        return gpus[0][0] if gpus else "cpu"
    if spec.name is not None:
        for d, n in gpus:
            if spec.name in n.lower().replace(" ", ""):
                return d
    elif spec.index is None and gpus:
        return gpus[0][0]
    elif spec.index is not None and spec.index < len(gpus):
        return gpus[spec.index][0]
    raise DeviceError(f"device {spec.raw!r} is not available here; available: {describe_available(devices)}")


def _gpu_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fingerprint(torch_device: str) -> dict[str, Any]:
    """What a measurement on ``torch_device`` depends on, plus its short ``id``."""
    import torch  # lazy: torch costs seconds to import

    fp: dict[str, Any] = {"torch": torch.__version__}
    if torch_device == "cpu":
        fp.update(
            kind="cpu",
            name=cpu_model(),
            logical_cores=os.cpu_count(),
            usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            isa=torch.backends.cpu.get_cpu_capability(),
        )
    else:
        idx = torch.device(torch_device).index or 0
        props = torch.cuda.get_device_properties(idx)
        fp.update(
            kind="cuda",
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            driver=_gpu_driver(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    fp["id"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    return fp
