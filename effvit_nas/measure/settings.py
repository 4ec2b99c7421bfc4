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
MALLOCS = ("fixed", "system")
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
        measure_s: the most seconds of timed windows (paper: 60); timing stops earlier once the
            figure is precise to ``ci_target`` (see :mod:`effvit_nas.measure.windows`).
        min_iters: timed iterations at least, however long they take.
        window_s: seconds per timed window (default 0.25 s, at least 2 iterations).
        ci_target: stop timing when the 95 % interval of the median window is within this
            fraction of it (default 0.01, i.e. ±1 %); 0 always times ``measure_s``.
        pair_iters: ratio mode only: iterations of each model per turn (default 1; the two
            models alternate iteration by iteration, so drift of the machine's speed cancels
            in each pair's ratio). ``window_s`` does not apply to ratio mode.
        malloc: ``fixed`` (default): glibc's mmap and trim thresholds are fixed in the timing
            process, so a forward pass reuses the same heap pages instead of faulting in fresh
            ones at random (see :mod:`effvit_nas.measure.heap`); ``system``: glibc's adaptive
            default, as before this setting existed.
    """

    batch: int
    threads: int = 1
    precision: str = "fp32"
    backend: str = "trace"
    warmup_s: float = 1.5
    measure_s: float = 4.0
    min_iters: int = 10
    window_s: float = 0.25
    ci_target: float = 0.01
    pair_iters: int = 1
    malloc: str = "fixed"

    def __post_init__(self) -> None:
        if self.batch <= 0:
            raise SettingError("BenchSettings.batch", f"must be positive, got {self.batch}")
        if self.threads <= 0:
            raise SettingError("BenchSettings.threads", f"must be positive, got {self.threads}")
        if self.precision not in PRECISIONS:
            raise SettingError("BenchSettings.precision", f"{self.precision!r} is unknown (choose from {', '.join(PRECISIONS)})")
        if self.backend not in BACKENDS:
            raise SettingError("BenchSettings.backend", f"{self.backend!r} is unknown (choose from {', '.join(BACKENDS)})")
        if self.malloc not in MALLOCS:
            raise SettingError("BenchSettings.malloc", f"{self.malloc!r} is unknown (choose from {', '.join(MALLOCS)})")
        if self.warmup_s < 0:
            raise SettingError("BenchSettings.warmup_s", f"must be >= 0 s, got {self.warmup_s}")
        if self.measure_s <= 0:
            raise SettingError("BenchSettings.measure_s", f"must be > 0 s, got {self.measure_s}")
        if self.min_iters < 1:
            raise SettingError("BenchSettings.min_iters", f"must be >= 1, got {self.min_iters}")
        if self.window_s <= 0:
            raise SettingError("BenchSettings.window_s", f"must be > 0 s, got {self.window_s}")
        if self.pair_iters < 1:
            raise SettingError("BenchSettings.pair_iters", f"must be >= 1, got {self.pair_iters}")
        if not 0 <= self.ci_target < 1:
            raise SettingError("BenchSettings.ci_target", f"must be a fraction in [0, 1), got {self.ci_target}")

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


def with_later_fields(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A protocol stored before some of BenchSettings' fields existed (``window_s``,
    ``ci_target``), completed with ``current``'s values for them: a study made then resumes
    with today's timing instead of being refused for settings it never recorded."""
    return {**{k: v for k, v in current.items() if k not in stored}, **stored}


@dataclass
class Measurement:
    """One throughput figure with its spread and everything needed to reproduce it.

    ``throughput`` and ``q1``/``q3`` (interquartile range of single iterations) are images/s;
    ``ci_low``/``ci_high`` the 95 % interval of the figure (images/s, NaN when too few windows);
    ``cv`` is the coefficient of variation of the iteration times; ``windows`` the timed windows
    and ``disturbed`` how many of them were left out for interference (NaN/0 for figures stored
    before windows existed); ``batch`` is the batch actually run (smaller than requested if it
    was halved after a GPU out-of-memory, see ``note``).
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
    ci_low: float = math.nan
    ci_high: float = math.nan
    windows: int = 0
    disturbed: int = 0
    window_times: list[float] = field(default_factory=list, compare=False)  # s/iteration per window used; not stored
    cached: bool = field(default=False, compare=False)
    started: float = field(default=math.nan, compare=False)  # epoch s; not kept in the store
    finished: float = field(default=math.nan, compare=False)  # epoch s; from a store: when it was stored

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["window_times"]  # the raw windows are for analysis, not for every record
        s = self.settings
        # Flat protocol fields so every figure states batch, precision, threads and backend.
        d.update(requested_batch=s["batch"], threads=s["threads"], precision=s["precision"], backend=s["backend"])
        return d


@dataclass
class RatioMeasurement:
    """A candidate's throughput relative to a reference's, the two timed in alternation (ratio
    mode). ``ratio`` is the trimmed mean over undisturbed pairs of candidate img/s / reference
    img/s (:meth:`~effvit_nas.measure.windows.PairRecord.estimate`), ``ci_low``/``ci_high`` its
    95 % interval, ``cv`` the CV of the single pairs' ratios; ``throughput`` and
    ``reference_throughput`` are the two models' median iterations in the same run (images/s)."""

    config_hash: str
    reference_hash: str
    ratio: float
    ci_low: float
    ci_high: float
    cv: float  # of the pair ratios used
    pairs: int
    disturbed: int
    throughput: float
    reference_throughput: float
    batch: int
    seconds: float
    settings: dict[str, Any]
    device: dict[str, Any]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
