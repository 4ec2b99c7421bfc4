"""Timed windows: the repeatable part of the throughput protocol.

A shared VM runs our timing thread beside other processes and other guests. Instead of one
long run summarised by its median iteration, the timed phase is cut into short windows
(``window_s`` each, at least ``_MIN_WINDOW_ITERS`` iterations). A window during which our
thread was off its core (the thread's CPU time falls short of the window's wall time) or the
hypervisor stole CPU time (``/proc/stat``) is *disturbed*: counted, kept out of the figure,
and replaced by another window. The figure is the median of the undisturbed windows' median
iteration times, with a distribution-free 95 % interval for it; timing stops as soon as that
interval is within ``±ci_target`` of the median (after ``_MIN_WINDOWS`` windows), or when
``measure_s`` seconds have been timed, whichever comes first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_MIN_WINDOWS = 8  # fewer windows give no usable 95 % interval of the median
_MIN_WINDOW_ITERS = 2
_OFF_CPU = 0.05  # a window is disturbed when our thread ran < 95 % of its wall time ...
_STEAL = 0.05  # ... or the hypervisor stole > 5 % of one core's time during it
_STAT = Path("/proc/stat")
FIGURE_QUANTILE = 0.5  # which window the figure stands for: the median (see the module doc)
# the iterations a gap is taken between (PairRecord.gap): the fastest 5 % of each model's, those
# least touched by interference; chosen over 0-50 % on 24 timings in 6 processes
# (results/pair_estimators_cpu.md)
GAP_QUANTILE = 0.05


def steal_seconds() -> float:
    """CPU seconds stolen by the hypervisor on this machine so far, all cores together
    (``/proc/stat``); NaN where the OS has no such file."""
    try:
        fields = _STAT.read_text().split("\n", 1)[0].split()
        return int(fields[8]) / 100.0  # USER_HZ is 100 on every Linux port
    except (OSError, IndexError, ValueError):
        return math.nan


@dataclass
class Window:
    """One timed window: its iteration times (s), wall time, our CPU time and stolen time (s)."""

    times: list[float]
    wall: float
    cpu: float
    steal: float

    @property
    def disturbed(self) -> bool:
        """Our thread was off its core, or the hypervisor stole time, for a noticeable part."""
        off_cpu = not math.isnan(self.cpu) and self.cpu < (1 - _OFF_CPU) * self.wall
        stolen = not math.isnan(self.steal) and self.steal > _STEAL * self.wall
        return off_cpu or stolen


@dataclass
class WindowRecord:
    """All windows of one measurement. The figure uses the undisturbed ones; only when every
    window was disturbed (a machine busy throughout) does it fall back to all of them."""

    windows: list[Window] = field(default_factory=list)

    @property
    def kept(self) -> list[Window]:
        return [w for w in self.windows if not w.disturbed]

    @property
    def disturbed(self) -> int:
        return len(self.windows) - len(self.kept)

    def used(self) -> list[Window]:
        return self.kept or self.windows

    def medians(self) -> np.ndarray:
        return np.asarray([np.median(w.times) for w in self.used()])

    def times(self) -> list[float]:
        return [t for w in self.used() for t in w.times]


def quantile_interval(values: np.ndarray, q: float) -> tuple[float, float]:
    """Distribution-free 95 % interval of the ``q`` quantile of ``values`` (order statistics at
    ranks n·q ± 1.96·sqrt(n·q·(1-q)), the normal approximation to the binomial); (NaN, NaN)
    for fewer than 6 values."""
    n = len(values)
    if n < 6:
        return math.nan, math.nan
    v = np.sort(values)
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - half) - 1)
    hi = min(n - 1, math.ceil(n * q + half))
    return float(v[lo]), float(v[hi])


def seconds_per_iteration(record: WindowRecord) -> float:
    """Seconds per iteration the figure stands for: the ``FIGURE_QUANTILE`` of the window
    medians."""
    return float(np.quantile(record.medians(), FIGURE_QUANTILE))


def precise_enough(record: WindowRecord, ci_target: float) -> bool:
    """Whether the 95 % interval of the figure is within ``±ci_target`` of it."""
    if ci_target <= 0 or len(record.kept) < _MIN_WINDOWS:  # never judged on disturbed windows
        return False
    lo, hi = quantile_interval(record.medians(), FIGURE_QUANTILE)
    return (hi - lo) / 2 <= ci_target * seconds_per_iteration(record)


def cpu_clock(threads: int, on_cpu: bool) -> Callable[[], float]:
    """The CPU-time clock that shows interference: this thread's when it runs every op (one
    intra-op thread), the process's per thread otherwise; NaN on GPU, where waiting for the
    device rightly leaves the CPU idle."""
    if not on_cpu:
        return lambda: math.nan
    if threads == 1:
        return time.thread_time
    return lambda: time.process_time() / threads


def timed_window(
    forward: Callable[[], Any],
    timed: Callable[[Callable[[], Any]], float],
    window_s: float,
    cpu: Callable[[], float],
    iters: int = _MIN_WINDOW_ITERS,
) -> Window:
    """Time iterations of ``forward`` for ``window_s`` seconds (at least ``iters``)."""
    times: list[float] = []
    c0, s0, t0 = cpu(), steal_seconds(), time.perf_counter()
    while len(times) < iters or time.perf_counter() - t0 < window_s:
        times.append(timed(forward))
    wall = time.perf_counter() - t0
    return Window(times, wall, cpu() - c0, steal_seconds() - s0)


def run_windows(
    forward: Callable[[], Any],
    timed: Callable[[Callable[[], Any]], float],
    *,
    window_s: float,
    measure_s: float,
    ci_target: float,
    min_iters: int,
    cpu: Callable[[], float],
) -> WindowRecord:
    """Windows until the figure is precise enough (and ``min_iters`` iterations are kept) or
    ``measure_s`` seconds are spent. Past that, windows go on only while none is undisturbed,
    for at most another ``measure_s``."""
    record = WindowRecord()
    start = time.perf_counter()
    while True:
        enough = sum(len(w.times) for w in record.kept) >= min_iters
        if enough and precise_enough(record, ci_target):
            break
        spent = time.perf_counter() - start
        if spent >= measure_s and enough:
            break
        if spent >= 2 * measure_s and len(record.times()) >= min_iters:  # disturbed throughout
            break
        record.windows.append(timed_window(forward, timed, window_s, cpu))
    return record


_TRIM = 0.2  # of the pair ratios cut at each end before averaging (see PairRecord.estimate)


def trimmed_log_mean(values: np.ndarray, trim: float = _TRIM) -> tuple[float, float, float]:
    """The ``trim``-trimmed mean of positive ``values`` taken on the log scale (a ratio and its
    inverse are equally far from 1), with a 95 % interval from the winsorised variance
    (Tukey-McLaughlin); the interval is (NaN, NaN) for fewer than 6 values."""
    logs = np.sort(np.log(values))
    n, g = len(logs), int(trim * len(logs))
    centre = float(np.mean(logs[g : n - g]))
    if n < 6:
        return math.exp(centre), math.nan, math.nan
    wins = np.clip(logs, logs[g], logs[n - g - 1])
    half = 1.96 * float(np.std(wins, ddof=1)) / ((1 - 2 * g / n) * math.sqrt(n))
    return math.exp(centre), math.exp(centre - half), math.exp(centre + half)


@dataclass
class PairRecord:
    """Iterations of a candidate and a reference timed alternately (ratio mode). Drift of the
    machine's speed (a host-level neighbour, invisible to the guest) slows both iterations of a
    pair alike and cancels in their ratio; the shorter the pair, the more of it cancels, so a
    turn is one timed iteration by default, after the settling iterations of fast models
    (results/throughput_pairs_cpu.md, results/anchor_settle_cpu.md)."""

    candidate: WindowRecord = field(default_factory=WindowRecord)
    reference: WindowRecord = field(default_factory=WindowRecord)
    settled: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))  # untimed iterations per turn

    @property
    def settle(self) -> tuple[float, float]:
        """Untimed iterations per turn of the candidate and the reference, on average."""
        c, r = (float(np.mean(s)) if s else 0.0 for s in self.settled)
        return c, r

    def ratios(self, disturbed_too: bool = False) -> np.ndarray:
        """Candidate throughput / reference throughput of every pair with neither side
        disturbed (of every pair with ``disturbed_too``)."""
        return np.asarray([np.median(r.times) / np.median(c.times) for c, r in self._pairs(disturbed_too)])

    def _pairs(self, disturbed_too: bool) -> list[tuple[Window, Window]]:
        """(candidate, reference) windows of every pair with neither side disturbed (of every pair with ``disturbed_too``)."""
        pairs = zip(self.candidate.windows, self.reference.windows, strict=True)
        return [(c, r) for c, r in pairs if disturbed_too or not (c.disturbed or r.disturbed)]

    def estimate(self, disturbed_too: bool = False) -> tuple[float, float, float]:
        """The ratio and its 95 % interval: the 20 %-trimmed mean of the pairs' log ratios.
        Short-turn ratios scatter by ~20 % on a shared VM, with occasional far outliers;
        over blocks of such pairs the trimmed mean repeated about as well as the median and the
        plain mean, and better than the ratio of the two models' median iterations
        (results/throughput_pairs_cpu.md)."""
        return trimmed_log_mean(self.ratios(disturbed_too))

    def gap(self, disturbed_too: bool = False, q: float = GAP_QUANTILE) -> tuple[float, float, float]:
        """The candidate's ``q`` quantile iteration time minus the reference's, in seconds, over
        the iterations of every pair with neither side disturbed (of every pair with
        ``disturbed_too``), and a 95 % interval from the two quantiles' own
        (:func:`quantile_interval`; NaN for fewer than 6 iterations of either).

        Why a gap of fast iterations: at ExecuTorch's batch-1 latency a slow phase of a shared VM
        lengthens the fastest iterations of every model by about the same milliseconds, so it
        cancels in their difference but not in their ratio, and it lengthens slower iterations by
        bursts of interference, which the fast quantile leaves out (results/pair_estimators_cpu.md)."""
        keep = self._pairs(disturbed_too)
        times = [np.asarray([t for pair in keep for t in pair[i].times]) for i in (0, 1)]
        c, r = (float(np.quantile(t, q)) for t in times)
        (c_lo, c_hi), (r_lo, r_hi) = (quantile_interval(t, q) for t in times)
        return c - r, c_lo - r_hi, c_hi - r_lo

    @property
    def disturbed(self) -> int:
        return len(self.candidate.windows) - len(self.ratios())


def turn_iters(iters: int, candidate_s: float, reference_s: float) -> tuple[int, int]:
    """Iterations per turn of the candidate and the reference, given each one's seconds per
    iteration: the slower model runs ``iters``, the faster one as many as take about as long.

    The idea: turns of equal length span equal stretches of the machine's drift. Measured, it
    does not pay: M5/M0 repeated with CV 4.1 % against 2.8 % for one iteration each (64 px,
    quiet; results/throughput_turns_cpu.md), since longer turns leave fewer pairs in the same
    time; ratio mode keeps equal timed iterations (as many as settled, :func:`_settle`). An
    unknown time (<= 0) gives ``iters`` to both."""
    if min(candidate_s, reference_s) <= 0:
        return iters, iters
    slow = max(candidate_s, reference_s)
    return max(iters, round(iters * slow / candidate_s)), max(iters, round(iters * slow / reference_s))


def _settle(forward: Callable[[], Any], timed: Callable[[Callable[[], Any]], float], settle_s: float, expected_s: float) -> int:
    """Untimed iterations of the incoming model while one more is expected to end within
    ``settle_s`` of their summed times. ``expected_s`` is its seconds per iteration in its last
    turn, not this turn's slow first ones (unknown when <= 0: the first iteration's).

    Decided per turn on the model's latest speed, not once per process: a count fixed from the
    warm-up could step between processes for a model near ``settle_s``
    (results/runtime_repeatability.md). A model known to take longer than ``settle_s`` per
    iteration is not settled (the switch adds 0.2-1 ms, a small part of it)."""
    settled, spent = 0, 0.0
    while spent + max(expected_s, 0.0) <= settle_s:
        t = timed(forward)  # timed like the rest (so a GPU's queue is drained), but not kept
        settled, spent = settled + 1, spent + t
        if t <= 0:  # a clock that cannot tell: no basis to go on
            break
        if expected_s <= 0:
            expected_s = t
    return settled


def _turn(
    forward: Callable[[], Any],
    timed: Callable[[Callable[[], Any]], float],
    cpu: Callable[[], float],
    settle_s: float,
    iters: int,
    expected_s: float,
) -> tuple[Window, int]:
    """One model's turn: settled (:func:`_settle`), then as many iterations timed as settled
    (``iters`` at least); the window and how many iterations settled."""
    settled = _settle(forward, timed, settle_s, expected_s) if settle_s > 0 else 0
    return timed_window(forward, timed, 0.0, cpu, max(iters, settled)), settled


def run_pairs(
    candidate: Callable[[], Any],
    reference: Callable[[], Any],
    timed: Callable[[Callable[[], Any]], float],
    *,
    iters: tuple[int, int],
    measure_s: float,
    ci_target: float,
    cpu: Callable[[], float],
    settle_s: float = 0.0,
    expected_s: tuple[float, float] = (0.0, 0.0),
) -> PairRecord:
    """Alternate turns of ``candidate`` and ``reference`` (:func:`_turn`: each settled for about
    ``settle_s`` untimed, ``expected_s`` their seconds per iteration as the warm-up found them,
    then ``iters[i]`` timed iterations, as many as settled at least), until the ratio's 95 %
    interval is within ``±ci_target`` of it (after ``_MIN_WINDOWS`` undisturbed pairs) or
    ``measure_s`` seconds are spent, with at least 2 pairs (going on while fewer than 2 are
    undisturbed, up to twice that)."""
    record = PairRecord()
    kept: list[float] = []  # undisturbed pairs' ratios, kept as they come: recomputing them all
    # after every pair would cost more than a 64 px iteration once there are hundreds
    last = list(expected_s)
    start = time.perf_counter()
    while True:
        if ci_target > 0 and len(kept) >= _MIN_WINDOWS:
            ratio, lo, hi = trimmed_log_mean(np.asarray(kept))
            if (hi - lo) / 2 <= ci_target * ratio:
                break
        spent = time.perf_counter() - start
        pairs = len(record.candidate.windows)
        if (spent >= measure_s and len(kept) >= 2) or (spent >= 2 * measure_s and pairs >= 2):  # 2: a spread exists
            break
        turns = []
        for i, forward in enumerate((candidate, reference)):
            window, settled = _turn(forward, timed, cpu, settle_s, iters[i], last[i])
            # the model's warm speed: not an unsettled turn's first iteration, which carries the switch
            warm = window.times if settled else window.times[1:]
            last[i] = float(np.median(warm)) if warm else last[i]
            turns.append(window)
            record.settled[i].append(settled)
        c, r = turns
        record.candidate.windows.append(c)
        record.reference.windows.append(r)
        if not (c.disturbed or r.disturbed):
            kept.append(float(np.median(r.times) / np.median(c.times)))
    return record
