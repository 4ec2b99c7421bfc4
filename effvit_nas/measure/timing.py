"""Measuring the throughput of one architecture on one device (in the calling process).

Protocol (the paper's, shortened by default so a search can afford it): random-initialised
model in deployment form (every BN folded, :meth:`EfficientViT.deploy`), prepared by the
chosen backend, a time-based warm-up, then short timed windows until the figure is precise to
``ci_target`` or ``measure_s`` have passed (at least ``min_iters`` iterations), each iteration
timed by the host clock on CPU and by CUDA events on GPU; windows disturbed by other processes
or the hypervisor are left out (:mod:`effvit_nas.measure.windows`). The figure is batch / the
median window's median iteration time, in images per second, with its 95 % interval, always
reported with batch, precision, threads and backend. Call this through :mod:`effvit_nas.measure.actor` to get the device held exclusively
within one Ray instance; :func:`device_lock` also keeps processes of other Ray instances (a
second search, a `bench`) from timing on the same device of this machine at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.devices import DeviceError
from effvit_nas.measure.heap import fix_malloc, huge_pages_note
from effvit_nas.measure.settings import BenchSettings, Measurement, RatioMeasurement
from effvit_nas.measure.windows import (
    FIGURE_QUANTILE,
    PairRecord,
    WindowRecord,
    cpu_clock,
    quantile_interval,
    run_pairs,
    run_windows,
    seconds_per_iteration,
    turn_iters,
)


def check_supported(settings: BenchSettings, torch_device: str) -> None:
    """DeviceError for combinations the device or backend cannot run (a backend whose runtime
    is not installed names the command that installs it)."""
    import torch  # lazy: torch costs seconds to import

    from effvit_nas.measure.backends import check  # lazy: loads torch; a driver that only asks the device actor needs none

    cuda = torch_device.startswith("cuda")
    if not cuda and settings.precision == "fp16":
        raise DeviceError("precision fp16 is not supported on cpu (use fp32 or bf16)")
    if cuda and settings.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision bf16 is not supported on {torch.cuda.get_device_name(torch.device(torch_device))}")
    check(settings, torch_device)


def prepare(config: ArchConfig, settings: BenchSettings, torch_device: str, batch: int) -> Callable[[], Any]:
    """Build, deploy and prepare the backend; returns a zero-argument forward pass, after
    checking that its output is eager PyTorch's (fp32) on the same input within the
    precision's tolerance (:func:`effvit_nas.measure.backends.compare_with_eager`)."""
    import torch  # lazy: torch costs seconds to import

    from effvit_nas.measure.backends import (  # lazy: loads torch; a driver that only asks the device actor needs none
        compare_with_eager,
        get,
    )
    from effvit_nas.model.efficientvit import build_model  # lazy: loads torch; a driver that only asks the device actor needs none

    torch.manual_seed(0)
    model = build_model(config).eval().deploy().to(torch_device)
    x = torch.randn(batch, 3, config.img_size, config.img_size, device=torch_device)
    with torch.inference_mode():
        reference = model(x)
    forward = get(settings.backend).prepare(model, x, settings, torch_device).forward
    compare_with_eager(settings.backend, forward(), reference, settings.precision)
    return forward


T = TypeVar("T")


LOCK_DIR_ENV = "EFFVIT_NAS_LOCK_DIR"


@contextlib.contextmanager
def device_lock(torch_device: str) -> Iterator[None]:
    """Hold this machine's lock for ``torch_device`` (all of the CPU counts as one device:
    timings on any of its cores disturb each other), waiting for any process holding it.

    An exclusive ``flock`` on a file in ``$EFFVIT_NAS_LOCK_DIR`` (default: the system temp
    folder), so it is per node, spans processes and Ray instances, and is released by the OS
    when its holder dies.
    """
    folder = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "effvit-nas-locks")
    folder.mkdir(parents=True, exist_ok=True)
    name = "cpu" if not torch_device.startswith("cuda") else f"cuda-{torch_device.partition(':')[2] or 0}"
    with open(folder / f"{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def halve_on_oom(run: Callable[[int], T], batch: int, free: Callable[[], None]) -> tuple[T, int]:
    """``run(batch)``, halving the batch after each CUDA out-of-memory until it fits.

    Returns the result and the batch that fitted; re-raises if even batch 1 does not fit.
    """
    import torch  # lazy: torch costs seconds to import

    while True:
        try:
            return run(batch), batch
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            free()
            batch //= 2


def wall_timer(sync: Callable[[], None]) -> Callable[[Callable[[], Any]], float]:
    """Seconds of one call by the host clock, after ``sync`` (the CPU protocol)."""

    def timed(forward: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        forward()
        sync()
        return time.perf_counter() - t0

    return timed


def cuda_event_timer() -> Callable[[Callable[[], Any]], float]:
    """Seconds of one call on the current CUDA stream, between two CUDA events.

    Events are stamped by the GPU itself, so the host's scheduling jitter (a busy core, a
    Python pause before the synchronize returns) does not enter the figure; GPU idle time
    between kernels still does, as it should for a throughput that includes launch overhead.
    """
    import torch  # lazy: torch costs seconds to import

    def timed(forward: Callable[[], Any]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        forward()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds

    return timed


def warm_up(forward: Callable[[], Any], settings: BenchSettings, sync: Callable[[], None]) -> float:
    """The untimed first call (compilation, primitive creation, cudnn autotuning), then
    ``settings.warmup_s`` seconds of untimed iterations; the median seconds per iteration of
    their second half (0 when none ran).

    Not the mean over all of them: a JIT's first optimised runs (TorchScript's profiling
    executor) are several times slower, and this figure decides whether ratio mode's first turn
    settles (a mean lifted by a process-dependent amount once moved trace's M1 between settled
    and unsettled turns from one process to the next: results/runtime_repeatability.md)."""
    forward()
    sync()
    times: list[float] = []
    end = time.perf_counter() + settings.warmup_s
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        forward()
        sync()  # per iteration: an asynchronous device's launch time is not its iteration
        times.append(time.perf_counter() - t0)
    return float(np.median(times[len(times) // 2 :])) if times else 0.0


def time_forward(
    forward: Callable[[], Any],
    settings: BenchSettings,
    sync: Callable[[], None],
    timed: Callable[[Callable[[], Any]], float] | None = None,
    cpu: Callable[[], float] | None = None,
) -> WindowRecord:
    """Timed windows of ``forward`` after the warm-up (see :mod:`effvit_nas.measure.windows`).

    ``timed`` times one iteration (default: the host clock after ``sync``); ``cpu`` is the
    CPU-time clock that reveals interference (default: none, nothing counts as disturbed).
    The time budget ``settings.measure_s`` is always counted on the host clock.
    """
    warm_up(forward, settings, sync)
    return run_windows(
        forward,
        timed or wall_timer(sync),
        window_s=settings.window_s,
        measure_s=settings.measure_s,
        ci_target=settings.ci_target,
        min_iters=settings.min_iters,
        cpu=cpu or (lambda: math.nan),
    )


LATENCY_QUANTILE = 0.9  # the latency metric's tail: p90 of single iterations


def tail_latency(record: WindowRecord, q: float = LATENCY_QUANTILE) -> dict[str, float]:
    """The ``q`` quantile of single iterations in ms, windowed as the figure is: each used
    window's ``q`` quantile, their median, and the 95 % interval of that median."""
    per_window = np.asarray([np.quantile(w.times, q) for w in record.used()])
    lo, hi = quantile_interval(per_window, FIGURE_QUANTILE)
    return {"p90_ms": 1e3 * float(np.median(per_window)), "p90_low": 1e3 * lo, "p90_high": 1e3 * hi}


def summarize(record: WindowRecord, batch: int, metric: str = "throughput") -> dict[str, Any]:
    """The figure (img/s): batch / the median of the windows' median iteration times, its 95 %
    interval, the IQR and CV of single iterations, and the window counts; for the latency
    metric also the p90 of single iterations (:func:`tail_latency`)."""
    t = np.asarray(record.times())
    per_iter = batch / t
    lo, hi = quantile_interval(record.medians(), FIGURE_QUANTILE)
    note = "every window disturbed: figure from all of them" if not record.kept else ""
    return {
        "throughput": batch / seconds_per_iteration(record),
        "q1": float(np.percentile(per_iter, 25)),
        "q3": float(np.percentile(per_iter, 75)),
        "cv": float(t.std() / t.mean()) if len(t) > 1 else math.nan,
        "iterations": len(t),
        "ci_low": batch / hi,  # the slowest window bounds the throughput from below
        "ci_high": batch / lo,
        "windows": len(record.windows),
        "disturbed": record.disturbed,
        "note": note,
        "window_times": [float(t) for t in record.medians()],
        **(tail_latency(record) if metric == "latency" else {}),
    }


@contextlib.contextmanager
def on_device(settings: BenchSettings, torch_device: str) -> Iterator[tuple[Callable, Callable, Callable]]:
    """Hold ``torch_device`` (its lock, ``settings.threads`` intra-op threads) and yield its
    (sync, iteration timer, CPU-time clock)."""
    import torch  # lazy: torch costs seconds to import

    check_supported(settings, torch_device)
    cuda = torch_device.startswith("cuda")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    if settings.malloc == "fixed":
        fix_malloc()
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(torch.device(torch_device))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timer = cuda_event_timer() if cuda else wall_timer(sync)
    try:
        with device_lock(torch_device):
            yield sync, timer, cpu_clock(settings.threads, on_cpu=not cuda)
    finally:
        torch.set_num_threads(prev_threads)


def _free(torch_device: str) -> Callable[[], None]:
    import torch  # lazy: torch costs seconds to import

    return torch.cuda.empty_cache if torch_device.startswith("cuda") else (lambda: None)


def _protocol_notes(batch: int, settings: BenchSettings) -> list[str]:
    """What of ``settings`` the measurement could not follow (empty when it followed them all)."""
    notes = [f"batch halved to {batch} after CUDA out-of-memory at {settings.batch}"] if batch != settings.batch else []
    heap = [fix_malloc() if settings.malloc == "fixed" else "", huge_pages_note() if settings.pages == "huge" else ""]
    return [n for n in [*notes, *heap] if n]


def measure(config: ArchConfig, settings: BenchSettings, torch_device: str, device_fp: dict[str, Any]) -> Measurement:
    """Measure ``config`` on ``torch_device`` in this process (see the module doc)."""
    start = time.perf_counter()
    with on_device(settings, torch_device) as (sync, timer, cpu):
        wall_start = time.time()
        record, batch = halve_on_oom(
            lambda b: time_forward(prepare(config, settings, torch_device, b), settings, sync, timer, cpu),
            settings.batch,
            _free(torch_device),
        )
        wall_end = time.time()
    stats = summarize(record, batch, settings.metric)
    note = "; ".join(n for n in [*_protocol_notes(batch, settings), stats.pop("note")] if n)
    return Measurement(
        config_hash=config.short_hash(),
        **stats,
        batch=batch,
        seconds=time.perf_counter() - start,
        settings=asdict(settings),
        device=device_fp,
        config=config.to_dict(),
        note=note,
        started=wall_start,
        finished=wall_end,
    )


def measure_ratio(
    config: ArchConfig,
    reference: ArchConfig,
    settings: BenchSettings,
    torch_device: str,
    device_fp: dict[str, Any],
    balance: bool = False,
    reference_forward: Callable[[], Any] | None = None,
) -> RatioMeasurement:
    """``config``'s throughput relative to ``reference``'s, the two timed in alternation on
    ``torch_device`` in this process (ratio mode, :class:`~effvit_nas.measure.windows.PairRecord`).

    ``reference_forward``: ``reference`` already prepared at ``settings.batch`` (a table timing
    many configs against one anchor build: ExecuTorch takes a minute to build one); prepared
    afresh when None, or when a GPU's out-of-memory halved the batch.

    Each turn settles the incoming model for about ``settings.pair_settle_s`` untimed (how
    many iterations, decided in each turn from its latest speed), then times
    ``settings.pair_iters`` of its iterations (at least as many as settled); ``balance``: as many of the
    faster model as last about as long as the slower one's turn
    (:func:`~effvit_nas.measure.windows.turn_iters`). Not the default: for M5 against M0 it
    repeated worse, not better (results/throughput_turns_cpu.md), as longer turns leave
    fewer pairs in the same time.
    """
    start = time.perf_counter()

    def pairs(batch: int) -> PairRecord:
        candidate = prepare(config, settings, torch_device, batch)
        reuse = batch == settings.batch
        ref = reference_forward if reference_forward is not None and reuse else prepare(reference, settings, torch_device, batch)
        return time_pair(candidate, ref, settings, sync, timer, cpu, balance)

    with on_device(settings, torch_device) as (sync, timer, cpu):
        record, batch = halve_on_oom(pairs, settings.batch, _free(torch_device))
    ratios = record.ratios()
    notes = _protocol_notes(batch, settings)
    if any(record.settle):  # what the settling came to for these two models (it depends on their speed)
        notes.append(f"turns settled {record.settle[0]:.1f}/{record.settle[1]:.1f} iteration(s) untimed on average")
    every = len(ratios) < 2  # run_pairs stops with 2 pairs at least; too few undisturbed ones
    if every:
        ratios = record.ratios(disturbed_too=True)
        notes.append("under 2 undisturbed pairs: ratio from all of them")
    ratio, lo, hi = record.estimate(disturbed_too=every)
    gap = record.gap(disturbed_too=every) if settings.pair_estimator == "gap" else (math.nan,) * 3
    return RatioMeasurement(
        config_hash=config.short_hash(),
        reference_hash=reference.short_hash(),
        ratio=ratio,
        ci_low=lo,
        ci_high=hi,
        cv=float(ratios.std() / ratios.mean()) if len(ratios) > 1 else math.nan,
        pairs=len(record.candidate.windows),
        disturbed=record.disturbed,
        throughput=batch / float(np.median([np.median(w.times) for w in record.candidate.windows])),
        reference_throughput=batch / float(np.median([np.median(w.times) for w in record.reference.windows])),
        batch=batch,
        seconds=time.perf_counter() - start,
        settings=asdict(settings),
        device=device_fp,
        note="; ".join(notes),
        p90_ratio=_tail_ratio(record) if settings.metric == "latency" else math.nan,
        gap_s=gap[0],
        gap_low=gap[1],
        gap_high=gap[2],
    )


def time_pair(
    candidate: Callable[[], Any],
    reference: Callable[[], Any],
    settings: BenchSettings,
    sync: Callable[[], None],
    timer: Callable[[Callable[[], Any]], float],
    cpu: Callable[[], float],
    balance: bool = False,
) -> PairRecord:
    """Two prepared forward passes warmed up (half of ``settings.warmup_s`` each, as long in all
    as one model's) and timed in alternating turns (:func:`~effvit_nas.measure.windows.run_pairs`,
    their warm-up speeds seeding the first turn's settling); ``balance`` as in
    :func:`measure_ratio`."""
    half = replace(settings, warmup_s=settings.warmup_s / 2)
    per_iter = (warm_up(candidate, half, sync), warm_up(reference, half, sync))
    iters = turn_iters(settings.pair_iters, *per_iter) if balance else (settings.pair_iters,) * 2
    return run_pairs(
        candidate,
        reference,
        timer,
        iters=iters,
        settle_s=settings.pair_settle_s,
        expected_s=per_iter,
        measure_s=settings.measure_s,
        ci_target=settings.ci_target,
        cpu=cpu,
    )


def _tail_ratio(record: PairRecord) -> float:
    """The candidate's p90 iteration time / the reference's, over the pairs of one run (both
    models timed alternately, so drift moves both alike)."""
    tail = [np.quantile(r.times(), LATENCY_QUANTILE) for r in (record.candidate, record.reference)]
    return float(tail[0] / tail[1])
