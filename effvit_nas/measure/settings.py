"""How a throughput is measured (:class:`BenchSettings`, part of every figure's key) and what
one measurement records (:class:`Measurement`). Units: images per second, seconds."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from effvit_nas.errors import SettingError

BACKENDS = ("eager", "trace", "compile", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16")
CPU_BATCH, GPU_BATCH = 16, 2048  # the paper's settings


@dataclass(frozen=True)
class BenchSettings:
    """How a throughput is measured. Part of every measurement's key.

    Attributes:
        batch: images per forward pass (paper: 16 on CPU, 2048 on GPU).
        threads: intra-op CPU threads (paper: 1 on CPU).
        precision: ``fp32``; ``fp16``/``bf16`` run under autocast (paper: fp16 on GPU).
        backend: ``trace`` (default: TorchScript trace of the fused model, as the paper),
            ``eager``, ``compile`` (torch.compile) or ``onnxruntime`` (CPU, fp32).
        warmup_s: seconds of untimed iterations first (paper: 10).
        measure_s: seconds of timed iterations (paper: 60).
        min_iters: timed iterations at least, however long they take.
    """

    batch: int
    threads: int = 1
    precision: str = "fp32"
    backend: str = "trace"
    warmup_s: float = 1.5
    measure_s: float = 4.0
    min_iters: int = 10

    def __post_init__(self) -> None:
        if self.batch <= 0:
            raise SettingError("BenchSettings.batch", f"must be positive, got {self.batch}")
        if self.threads <= 0:
            raise SettingError("BenchSettings.threads", f"must be positive, got {self.threads}")
        if self.precision not in PRECISIONS:
            raise SettingError("BenchSettings.precision", f"{self.precision!r} is unknown (choose from {', '.join(PRECISIONS)})")
        if self.backend not in BACKENDS:
            raise SettingError("BenchSettings.backend", f"{self.backend!r} is unknown (choose from {', '.join(BACKENDS)})")
        if self.warmup_s < 0:
            raise SettingError("BenchSettings.warmup_s", f"must be >= 0 s, got {self.warmup_s}")
        if self.measure_s <= 0:
            raise SettingError("BenchSettings.measure_s", f"must be > 0 s, got {self.measure_s}")
        if self.min_iters < 1:
            raise SettingError("BenchSettings.min_iters", f"must be >= 1, got {self.min_iters}")

    @classmethod
    def for_device(cls, device_kind: str, batch: int | None = None, precision: str | None = None, **kw: Any) -> BenchSettings:
        """The paper's defaults for ``device_kind`` (``cpu``/``cuda``) unless overridden."""
        gpu = device_kind == "cuda"
        if batch is None:
            batch = GPU_BATCH if gpu else CPU_BATCH
        if precision is None:
            precision = "fp16" if gpu else "fp32"
        return cls(batch=batch, precision=precision, **kw)

    def key(self) -> str:
        """Short id of the protocol (everything that changes the number)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Measurement:
    """One throughput figure with its spread and everything needed to reproduce it.

    ``throughput`` and ``q1``/``q3`` (interquartile range) are images/s; ``cv`` is the
    coefficient of variation of the iteration times; ``batch`` is the batch actually run
    (smaller than requested if it was halved after a GPU out-of-memory, see ``note``).
    """

    config_hash: str
    throughput: float
    q1: float
    q3: float
    cv: float
    iterations: int
    batch: int
    seconds: float
    settings: dict[str, Any]
    device: dict[str, Any]
    config: dict[str, Any]
    note: str = ""
    cached: bool = field(default=False, compare=False)
    started: float = field(default=math.nan, compare=False)  # epoch s; not kept in the store
    finished: float = field(default=math.nan, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        s = self.settings
        # Flat protocol fields so every figure states batch, precision, threads and backend.
        d.update(requested_batch=s["batch"], threads=s["threads"], precision=s["precision"], backend=s["backend"])
        return d
