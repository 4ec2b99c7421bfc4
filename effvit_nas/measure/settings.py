"""How a throughput is measured (:class:`BenchSettings`, part of every figure's key) and what
one measurement records (:class:`Measurement`). Units: images per second, seconds."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from effvit_nas.errors import SettingError
from effvit_nas.measure.backends import NAMES as BACKENDS
from effvit_nas.measure.backends import TORCH_NATIVE, get

PRECISIONS = ("fp32", "fp16", "bf16")
METRICS = ("throughput", "latency")
GRAPH_OPTS = ("disable", "basic", "extended", "all")  # ONNX Runtime's graph optimisation levels
MALLOCS = ("fixed", "system")
PAGES = ("huge", "system")
# how ratio mode's two models become a figure (BenchSettings.pair_estimator)
PAIR_ESTIMATORS = ("ratio", "gap")
CPU_BATCH, GPU_BATCH = 16, 2048  # the paper's settings
# the preset anchored figures are scaled by unless another is named (at the configs' or the
# space's resolution): the smallest, so an anchor's turns cost least
DEFAULT_ANCHOR = "M0"
# a backend's own protocol defaults where the general ones are not enough, by (backend,
# metric); `BenchSettings.for_device` (so the CLI) applies them, a value given always wins
BACKEND_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # 4 timed iterations per ratio-mode turn: OpenVINO's batch-1 latency repeated at 3.7-3.9 %
    # over 10 fresh processes with 1 and within 1.4-1.6 % with 4 (each switch between two
    # compiled models costs it more than other runtimes; results/runtime_repeatability.md,
    # results/build_spread_cpu.md)
    # Its figure is a gap, as every measured CPU backend's batch-1 latency is (why: ExecuTorch's,
    # below): over 6 fresh processes x 4 timings, M1 0.79 % and M5 1.48 % as a gap, 2.59 % and
    # 5.27 % as the pairs' ratios (results/pair_estimators_cpu.md)
    ("openvino", "latency"): {"pair_iters": 4, "pair_estimator": "gap"},
    # the whole --duration, never stopped at ±ci_target: ExecuTorch's batch-1 pairs of one phase
    # of the machine's speed agree so well that ±1 % was met after as few as 8 pairs, and the
    # shortest stops were one build's extreme timings (early stops' CV 3.6 % and 3.9 %, against
    # 2.5 % and 2.8 % timed whole; results/build_spread_cpu.md). Over fresh processes it did not
    # bring ExecuTorch within 2 % (results/runtime_repeatability.md).
    # ... and its figure is the anchor's time plus the gap between the two models' fastest 5 %
    # of iterations: a slow phase adds about the same ms to every model's fast iterations, so
    # it moves their ratio and not their gap (M1 over 10 fresh processes: 1.04 % as a gap,
    # 2.95-3.49 % as a ratio; results/pair_estimators_cpu.md, results/runtime_repeatability.md)
    ("executorch", "latency"): {"ci_target": 0.0, "pair_estimator": "gap"},
    # the same gap for ONNX Runtime's batch-1 latency: over 10 fresh processes on one VM, M1
    # 1.33 % and M5 3.11 % as a gap, 2.19 % and 3.82 % as a ratio (results/pair_estimators_cpu.md,
    # results/runtime_repeatability.md)
    ("onnxruntime", "latency"): {"pair_estimator": "gap"},
    # and for PyTorch's own CPU backends (the mean CV of M1 and M5, over all 24 timings and
    # over each process's first: trace 1.87 % as a gap, 3.23 % as the pairs' ratios; eager
    # 2.05 % and 2.98 %; results/pair_estimators_cpu.md)
    ("trace", "latency"): {"pair_estimator": "gap"},
    ("eager", "latency"): {"pair_estimator": "gap"},
}


# the settings that take one of a few names, and those names
_CHOICES = {
    "precision": PRECISIONS,
    "backend": BACKENDS,
    "malloc": MALLOCS,
    "pages": PAGES,
    "metric": METRICS,
    "graph_opt": GRAPH_OPTS,
    "pair_estimator": PAIR_ESTIMATORS,
}


def backend_defaults_text(setting: str) -> str:
    """``setting``'s defaults in words for a flag's help: ``4 for openvino at batch-1 latency, else 1``."""
    own = [
        f"{_text(d[setting])} for {b} at {'batch-1 latency' if m == 'latency' else m}"
        for (b, m), d in BACKEND_DEFAULTS.items()
        if setting in d
    ]
    return ", ".join([*own, f"else {_text(getattr(BenchSettings, setting))}"])


def _text(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:g}"


@dataclass(frozen=True)
class BenchSettings:
    """How a throughput is measured. Part of every measurement's key.

    Attributes:
        batch: images per forward pass (paper: 16 on CPU, 2048 on GPU).
        threads: intra-op CPU threads (paper: 1 on CPU).
        precision: ``fp32``; ``fp16``/``bf16`` run under autocast (paper: fp16 on GPU).
        backend: ``trace`` (default: TorchScript trace of the fused model, as the paper),
            ``eager``, ``compile`` (torch.compile), ``onnxruntime``, ``openvino``, ``tensorrt``
            or ``executorch`` (:mod:`effvit_nas.measure.backends`).
        warmup_s: seconds of untimed iterations first (paper: 10).
        measure_s: the most seconds of timed windows (paper: 60); timing stops earlier once the
            figure is precise to ``ci_target`` (see :mod:`effvit_nas.measure.windows`).
        min_iters: timed iterations at least, however long they take.
        window_s: seconds per timed window (default 0.25 s, at least 2 iterations).
        ci_target: stop timing when the 95 % interval of the median window is within this
            fraction of it (default 0.01, i.e. ±1 %); 0 always times ``measure_s``
            (:meth:`for_device` takes the backend's own from :data:`BACKEND_DEFAULTS`: 0 for
            ExecuTorch latency).
        pair_iters: ratio mode only: timed iterations of each model per turn, at least (default
            1; :meth:`for_device`, which the CLI uses, takes the backend's own from
            :data:`BACKEND_DEFAULTS`: 4 for OpenVINO latency; more where ``pair_settle_s`` settles
            more; the two models alternate in short turns, so drift of the machine's speed
            cancels in each pair's ratio). ``window_s``
            does not apply to ratio mode.
        pair_settle_s: ratio mode only: each turn starts with untimed iterations of the
            incoming model lasting about this long (default 0.01 s; how many is decided in
            each turn from the model's latest iteration), and times as many iterations as it
            settled. The first inferences after the other model ran are
            slower (its weights refill the caches; OpenVINO for up to 20 ms) by 0.2-1 ms,
            which biased ratios of fast models towards 1 (results/anchor_settle_cpu.md); a
            deployed model runs back to back. A model whose iteration is longer than this is
            not settled: its one timed iteration still carries the switch (measured at batch
            16: 0.2-0.3 ms, up to ~2.5 % of a 10-20 ms iteration with ONNX Runtime or
            OpenVINO; none with trace). 0: no settling, as before this setting (0.3).
        malloc: ``fixed`` (default): glibc's mmap and trim thresholds are fixed in the timing
            process, so a forward pass reuses the same heap pages instead of faulting in fresh
            ones at random (see :mod:`effvit_nas.measure.heap`); ``system``: glibc's adaptive
            default, as before this setting existed.
        pages: ``huge`` (default): the timing process starts with glibc asking for 2 MiB
            transparent huge pages under everything it allocates, so a large model's weights
            do not run at whichever level its process's scattered 4 KiB pages give (see
            :mod:`effvit_nas.measure.heap`); ``system``: the machine's default, as every figure
            stored before this setting had.
        metric: ``throughput`` (default: images/s at ``batch``) or ``latency`` (batch 1: the
            median and 90th percentile of single iterations, in ms; the figure kept as
            ``throughput`` is 1 / median latency, so everything judged on throughput, feasibility
            included, keeps its direction).
        graph_opt: ONNX Runtime's graph optimisation level (``all``, default; ``extended``,
            ``basic``, ``disable``); the other backends ignore it.
        pair_estimator: ratio mode only: ``ratio`` (default: the trimmed mean of the pairs'
            speed ratios, times the reference's figure) or ``gap`` (the reference's figure in
            seconds plus the candidate's fast-quantile iteration time minus the reference's,
            :meth:`~effvit_nas.measure.windows.PairRecord.gap`); :meth:`for_device` takes the
            backend's own from :data:`BACKEND_DEFAULTS`: ``gap`` for ExecuTorch and ONNX Runtime
            latency.
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
    pair_settle_s: float = 0.01
    malloc: str = "fixed"
    metric: str = "throughput"
    graph_opt: str = "all"
    pair_estimator: str = "ratio"
    pages: str = "huge"

    def __post_init__(self) -> None:
        if self.batch <= 0:
            raise SettingError("BenchSettings.batch", f"must be positive, got {self.batch}")
        if self.threads <= 0:
            raise SettingError("BenchSettings.threads", f"must be positive, got {self.threads}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise SettingError(f"BenchSettings.{name}", f"{getattr(self, name)!r} is unknown (choose from {', '.join(choices)})")
        if self.metric == "latency" and self.batch != 1:
            raise SettingError("BenchSettings.batch", f"must be 1 for the latency metric, got {self.batch}")
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
        if not 0 <= self.pair_settle_s <= 1:
            raise SettingError("BenchSettings.pair_settle_s", f"must be within 0-1 s, got {self.pair_settle_s}")
        if not 0 <= self.ci_target < 1:
            raise SettingError("BenchSettings.ci_target", f"must be a fraction in [0, 1), got {self.ci_target}")

    @classmethod
    def for_device(
        cls,
        device_kind: str,
        batch: int | None = None,
        precision: str | None = None,
        pair_iters: int | None = None,
        ci_target: float | None = None,
        pair_estimator: str | None = None,
        **kw: Any,
    ) -> BenchSettings:
        """The paper's defaults for ``device_kind`` (``cpu``/``cuda``) unless overridden, and
        the backend's own ``pair_iters``, ``ci_target`` and ``pair_estimator``
        (:data:`BACKEND_DEFAULTS`, else the fields' defaults) unless given."""
        gpu = device_kind == "cuda"
        own = BACKEND_DEFAULTS.get((kw.get("backend", cls.backend), kw.get("metric", cls.metric)), {})
        given = {"pair_iters": pair_iters, "ci_target": ci_target, "pair_estimator": pair_estimator}
        kw.update({k: own.get(k, getattr(cls, k)) if v is None else v for k, v in given.items()})
        if batch is None:
            batch = 1 if kw.get("metric") == "latency" else GPU_BATCH if gpu else CPU_BATCH
        if precision is None:
            precision = "fp16" if gpu else "fp32"
        return cls(batch=batch, precision=precision, **kw)

    @classmethod
    def from_stored(cls, fields: dict[str, Any]) -> BenchSettings:
        """Settings as a study or record stored them: a field added since takes the value its
        figures had in effect (``pair_settle_s`` 0 before 0.3), not today's default, so their
        key is the one they were stored under."""
        return cls(**{**_LATER_DEFAULTS, **fields})

    def runtime(self) -> str | None:
        """The backend's runtime and version (``onnxruntime==1.23.2``); None for PyTorch's own
        backends, whose version (torch's) is in the device fingerprint already."""
        return None if self.backend in TORCH_NATIVE else get(self.backend).version()

    def key(self) -> str:
        """Short id of the protocol (everything that changes the number): the settings and the
        backend's runtime version."""
        return protocol_key(asdict(self), self.runtime())


# Fields added after figures were stored under keys without them, at the value those figures
# had in effect: left out of the key at that value, so the stored figures are still found.
_LATER_DEFAULTS = {"metric": "throughput", "graph_opt": "all", "pair_settle_s": 0.0, "pair_estimator": "ratio", "pages": "system"}


# How ratio mode counts a turn's settling iterations, in the key of settled figures: decided per
# turn (since commit 82ed36d); figures settled by the first rule, a count fixed once per process
# from the warm-up (0.3 development builds only, never released), are measured again.
_SETTLE_RULE = "per-turn"


def protocol_key(fields: dict[str, Any], runtime: str | None) -> str:
    """Short id of settings ``fields`` run by ``runtime`` (see :meth:`BenchSettings.key`)."""
    d = {k: v for k, v in fields.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}
    if d.get("pair_settle_s"):
        d["settle_rule"] = _SETTLE_RULE
    if runtime is not None:
        d["runtime"] = runtime
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def with_later_fields(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A protocol stored before some of BenchSettings' fields existed, completed: with the
    value its figures had in effect where that changes them (``_LATER_DEFAULTS``: a study timed
    without settling is not resumed with settling, mixing two protocols), else with
    ``current``'s (``window_s``, ``ci_target``: a study made then resumes with today's timing
    instead of being refused for settings it never recorded)."""
    return {**current, **_LATER_DEFAULTS, **stored}


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
    p90_ms: float = math.nan  # latency metric: the 90th percentile of single iterations (ms) ...
    p90_low: float = math.nan  # ... and its 95 % interval
    p90_high: float = math.nan
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
        d["metric"] = s.get("metric", "throughput")
        if d["metric"] == "latency":
            d.update(p50_ms=self.p50_ms, p50_low=1e3 * self.batch / self.ci_high, p50_high=1e3 * self.batch / self.ci_low)
        else:
            for k in ("p90_ms", "p90_low", "p90_high"):
                del d[k]
        return d

    @property
    def p50_ms(self) -> float:
        """Milliseconds per batch the figure stands for (the median latency at batch 1)."""
        return 1e3 * self.batch / self.throughput


@dataclass
class RatioMeasurement:
    """A candidate's throughput relative to a reference's, the two timed in alternation (ratio
    mode). ``ratio`` is the trimmed mean over undisturbed pairs of candidate img/s / reference
    img/s (:meth:`~effvit_nas.measure.windows.PairRecord.estimate`; with ``pair_estimator``
    ``gap`` the figure comes from ``gap_s`` instead, :func:`~effvit_nas.measure.actor.paired_measurement`), ``ci_low``/``ci_high`` its
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
    p90_ratio: float = math.nan  # latency metric: the candidate's p90 iteration time / the reference's, in this run
    # pair_estimator "gap": the candidate's fast-quantile iteration time minus the reference's
    # (s per batch) and its 95 % interval; NaN otherwise
    gap_s: float = math.nan
    gap_low: float = math.nan
    gap_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
