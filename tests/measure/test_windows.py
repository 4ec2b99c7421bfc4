import math

import numpy as np
import pytest

from effvit_nas.measure.timing import summarize
from effvit_nas.measure.windows import PairRecord, Window, WindowRecord, quantile_interval, run_windows


@pytest.fixture(autouse=True)
def _no_real_steal(monkeypatch):
    """These windows run on fake clocks for a millisecond; the VM's real steal counter (10 ms
    ticks) would mark one disturbed now and then. The steal rule is tested on Window directly."""
    monkeypatch.setattr("effvit_nas.measure.windows.steal_seconds", lambda: math.nan)


def test_quantile_interval_brackets_the_median_by_order_statistics():
    v = np.arange(1.0, 21.0)  # 20 values, median 10.5
    lo, hi = quantile_interval(v, 0.5)
    assert (lo, hi) == (5.0, 16.0)  # ranks 5 and 16 of 20 (normal approximation to the binomial)
    assert all(math.isnan(x) for x in quantile_interval(np.arange(5.0), 0.5))


@pytest.mark.parametrize(
    "cpu, steal, disturbed",
    [(1.0, 0.0, False), (0.9, 0.0, True), (1.0, 0.06, True), (math.nan, math.nan, False), (math.nan, 0.2, True)],
)
def test_a_window_is_disturbed_when_our_thread_lost_its_core(cpu, steal, disturbed):
    assert Window([0.1], wall=1.0, cpu=cpu, steal=steal).disturbed is disturbed


class _Interference:
    """A CPU clock and an iteration timer for run_windows: every ``period``-th window our
    thread gets no CPU time and its iterations take 10x longer, as under a competing process."""

    def __init__(self, period: int):
        self.calls, self.period = 0, period

    def window(self) -> int:
        return self.calls // 2  # the CPU clock is read at the start and the end of each window

    def cpu(self) -> float:
        w, start = self.window(), self.calls % 2 == 0
        self.calls += 1
        return 0.0 if start or w % self.period == 0 else 1e9

    def timed(self, forward) -> float:
        forward()
        return 1.0 if self.window() % self.period == 0 else 0.1


def test_disturbed_windows_are_counted_and_left_out_of_the_figure():
    fake = _Interference(period=3)
    record = run_windows(lambda: None, fake.timed, window_s=0.002, measure_s=0.1, ci_target=0.0, min_iters=1, cpu=fake.cpu)
    stats = summarize(record, batch=16)
    assert stats["disturbed"] == len(record.windows) - len(record.kept) > 0
    assert stats["throughput"] == pytest.approx(160.0)  # 16 images / 0.1 s: the slow windows do not count
    assert stats["ci_low"] == pytest.approx(160.0) and stats["ci_high"] == pytest.approx(160.0)
    assert stats["note"] == ""


def test_timing_stops_once_the_interval_is_narrow_enough():
    fake = _Interference(period=10**9)  # window 0 only is disturbed
    record = run_windows(lambda: None, fake.timed, window_s=0.001, measure_s=30.0, ci_target=0.01, min_iters=1, cpu=fake.cpu)
    assert len(record.kept) == 8 and record.disturbed == 1  # constant times: 8 windows suffice, long before 30 s


def test_a_machine_busy_throughout_still_gives_a_figure_and_says_so():
    record = WindowRecord([Window([0.2, 0.2], wall=0.4, cpu=0.0, steal=0.0) for _ in range(3)])
    stats = summarize(record, batch=4)
    assert stats["throughput"] == pytest.approx(20.0) and stats["disturbed"] == 3
    assert "every window disturbed" in stats["note"] and math.isnan(stats["ci_low"])


def test_ratio_mode_cancels_drift_that_slows_both_models_alike():
    """The machine runs at full speed, then 1.5x slower, alternating every few iterations; the
    candidate is twice as fast as the reference. Separate iterations scatter, the ratio does not."""
    from effvit_nas.measure.windows import run_pairs

    state = {"windows": 0}

    def timed(forward) -> float:
        base = forward()  # seconds per iteration of that model at full speed
        return base * (1.5 if (state["windows"] // 6) % 2 else 1.0)

    def cpu() -> float:  # read at the start and the end of each turn: counts turns
        state["windows"] += 0.5
        return math.nan

    record = run_pairs(lambda: 0.01, lambda: 0.02, timed, iters=(1, 1), measure_s=0.2, ci_target=0.0, cpu=cpu)
    ratios = record.ratios()
    assert len(ratios) >= 8 and record.disturbed == 0
    assert np.allclose(ratios, 2.0) and record.estimate()[0] == pytest.approx(2.0)
    assert all(len(w.times) == 1 for w in record.candidate.windows + record.reference.windows)
    separate = [np.median(w.times) for w in record.candidate.windows]
    assert max(separate) / min(separate) == pytest.approx(1.5)


def test_turns_of_models_far_apart_in_speed_last_about_as_long():
    """The slower model runs ``pair_iters`` per turn, the faster as many as take as long; the
    pairs' ratios are per iteration, so unequal turns leave them unbiased."""
    from effvit_nas.measure.windows import run_pairs, turn_iters

    assert turn_iters(1, 0.01, 0.047) == (5, 1) and turn_iters(1, 0.03, 0.01) == (1, 3)
    assert turn_iters(2, 0.01, 0.013) == (3, 2) and turn_iters(1, 0.02, 0.02) == (1, 1)
    assert turn_iters(1, 0.0, 0.05) == (1, 1)  # no warm-up iteration ran: no basis to balance
    record = run_pairs(
        lambda: 0.01, lambda: 0.05, lambda f: f(), iters=turn_iters(1, 0.01, 0.05), measure_s=0.05, ci_target=0.0, cpu=lambda: math.nan
    )
    assert {len(w.times) for w in record.candidate.windows} == {5} and {len(w.times) for w in record.reference.windows} == {1}
    assert np.allclose(record.ratios(), 5.0)


def _switching_pair(switch_s: float, *seconds: float):
    """Fake forward passes (each returns its own seconds, to be timed by ``lambda f: f()``) whose
    first iteration after another one ran costs ``switch_s`` more, as caches refill."""
    last: list[int] = [-1]

    def model(i: int, s: float):
        def forward() -> float:
            cold, last[0] = last[0] != i, i
            return s + (switch_s if cold else 0.0)

        return forward

    return [model(i, s) for i, s in enumerate(seconds)]


def test_settling_each_turn_removes_the_cost_of_switching_models():
    """Each model's first iteration after the other ran costs 0.02 s more (its caches refilled):
    with one timed iteration per turn the pairs' ratio (reference's time / candidate's) of a
    0.01 s against a 0.02 s model comes out 0.04 / 0.03 instead of 2; settled turns time only
    warm iterations and give 2."""
    from effvit_nas.measure.windows import run_pairs

    fast, slow = _switching_pair(0.02, 0.01, 0.02)
    kw = dict(measure_s=0.3, ci_target=0.0, cpu=lambda: math.nan)
    biased = run_pairs(fast, slow, lambda f: f(), iters=(1, 1), **kw)
    assert np.allclose(biased.ratios(), 0.04 / 0.03)  # reference's time / candidate's
    assert biased.settle == (0.0, 0.0)
    # 0.045 s of settling: the cold iteration (0.03 s) and one warm one (0.01 s) end within it,
    # a third would not; the slow model's cold 0.04 s leaves no room for a second
    settled = run_pairs(fast, slow, lambda f: f(), iters=(1, 1), settle_s=0.045, expected_s=(0.01, 0.02), **kw)
    assert np.allclose(settled.ratios(), 2.0)
    assert settled.settle == (2.0, 1.0)
    assert {len(w.times) for w in settled.candidate.windows} == {2}  # as many timed as settled; settling not kept


def test_a_turn_settles_by_the_models_latest_speed_not_the_warm_ups():
    """The warm-up put the model at 0.03 s per iteration (too slow to settle in 0.022 s); it runs
    at 0.005 s: from its second turn on, the count follows the speed it shows (its first turn's
    second timed iteration, after one of its own), not the warm-up's."""
    from effvit_nas.measure.windows import run_pairs

    record = run_pairs(
        lambda: 0.005, lambda: 0.005, lambda f: f(), iters=(2, 1), settle_s=0.022, expected_s=(0.03, 0.0), measure_s=0.05,
        ci_target=0.0, cpu=lambda: math.nan,
    )  # fmt: skip
    assert record.settled[0][0] == 0 and set(record.settled[0][1:]) == {4}
    assert set(record.settled[1]) == {4}  # unknown at first (0): one iteration taught it


def test_a_turn_that_timed_only_its_cold_iteration_does_not_stop_settling():
    """A 0.008 s model whose first iteration after a switch takes 0.015 s, settling 0.01 s: a
    turn that settled nothing (its warm-up said 0.012 s) timed only that cold iteration, which
    says nothing of its warm speed; the next turn keeps the warm-up's figure, and a turn timing
    two or more iterations (the later ones warm) updates it."""
    from effvit_nas.measure.windows import run_pairs

    kw = dict(measure_s=0.1, ci_target=0.0, cpu=lambda: math.nan)
    stuck = run_pairs(*_switching_pair(0.007, 0.008, 0.008), lambda f: f(), iters=(1, 1), settle_s=0.01, expected_s=(0.012, 0.008), **kw)
    assert set(stuck.settled[0]) == {0}  # the warm-up's figure stands: no cold iteration replaces it
    assert set(stuck.settled[1]) == {1}  # settled, so its timed iteration is warm: 0.008 s, and it stays settled
    freed = run_pairs(*_switching_pair(0.007, 0.008, 0.008), lambda f: f(), iters=(2, 1), settle_s=0.01, expected_s=(0.012, 0.008), **kw)
    assert freed.settled[0][0] == 0 and set(freed.settled[0][1:]) == {1}  # its 2nd timed iteration was warm


def test_the_pair_ratio_is_a_trimmed_log_mean_that_outliers_do_not_move():
    """Ratios 2.0 with 1 in 10 pairs hit by a burst (the candidate's iteration 3x slower): the
    20 % trim drops them, the plain mean would not; the interval brackets the estimate and
    narrows with more pairs."""
    from effvit_nas.measure.windows import trimmed_log_mean

    rng = np.random.default_rng(0)
    ratios = 2.0 * np.exp(rng.normal(0, 0.1, 200))
    ratios[::10] /= 3
    est, lo, hi = trimmed_log_mean(ratios)
    assert est == pytest.approx(2.0, rel=0.02) and np.mean(ratios) < 1.9
    assert lo < est < hi and (hi - lo) / est < 0.05
    _, lo_few, hi_few = trimmed_log_mean(ratios[:20])
    assert hi_few - lo_few > hi - lo
    assert trimmed_log_mean(np.array([1.0, 4.0]))[0] == pytest.approx(2.0)  # too few to trim: geometric mean
    assert all(math.isnan(x) for x in trimmed_log_mean(np.array([1.0, 4.0]))[1:])


def test_warm_up_reports_the_steady_iteration_not_a_mean_lifted_by_the_first_runs(monkeypatch):
    """A JIT's first optimised runs are several times slower (three of 50 ms before 5 ms ones
    here, on a fake clock): the per-iteration time that sizes the settling is the steady 5 ms,
    where the mean over the warm-up (5.8 ms) would cross a 5.5 ms threshold depending on how
    slow those first runs happened to be."""
    from effvit_nas.measure import timing
    from effvit_nas.measure.settings import BenchSettings

    clock = [0.0]
    calls = [0]

    def forward() -> None:
        calls[0] += 1
        clock[0] += 0.05 if calls[0] <= 4 else 0.005  # the untimed first call, then 3 slow runs

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    per_iter = timing.warm_up(forward, BenchSettings(batch=1, warmup_s=1.0), lambda: None)
    assert per_iter == pytest.approx(0.005)
    assert (clock[0] - 0.05) / (calls[0] - 1) > 0.0055  # what the mean would have said


def _pairs(candidate_s: float, reference_s: float, slow_s: float, bursts: int) -> PairRecord:
    """60 pairs, the second half in a slow phase that adds ``slow_s`` to every iteration of
    either model; ``bursts`` of each half's pairs interrupted (both iterations 1.5x longer)."""
    record = PairRecord()
    for i in range(60):
        extra = slow_s if i >= 30 else 0.0
        burst = 1.5 if i % 30 < bursts else 1.0
        for base, side in ((candidate_s, record.candidate), (reference_s, record.reference)):
            t = (base + extra) * burst
            side.windows.append(Window([t], t, math.nan, math.nan))
    return record


def test_a_gap_of_fast_iterations_cancels_a_slow_phase_that_adds_the_same_time_to_both():
    """ExecuTorch's batch-1 case (results/pair_estimators_cpu.md): a slow phase adds about the same
    milliseconds to both models, so the pairs' ratio moves with it and the gap does not; bursts
    of interference are left out by the fast quantile."""
    quiet, slow = _pairs(0.004, 0.003, 0.0, 6), _pairs(0.004, 0.003, 0.0005, 6)
    for record in (quiet, slow):
        gap, lo, hi = record.gap()
        assert gap == pytest.approx(0.001) and lo <= gap <= hi
    assert slow.estimate()[0] > quiet.estimate()[0] * 1.01  # positive control: the ratio does move
    # a disturbed pair is left out, unless asked for
    record = _pairs(0.004, 0.003, 0.0, 0)
    for i in range(5):  # off its core all window long
        record.candidate.windows[i] = Window([0.001], 1.0, 0.0, math.nan)
    assert record.gap()[0] == pytest.approx(0.001) and record.gap(disturbed_too=True)[0] < 0.001
    # too few iterations for an interval: the gap without one
    few = _pairs(0.004, 0.003, 0.0, 0)
    for side in (few.candidate, few.reference):
        del side.windows[5:]
    assert few.gap()[0] == pytest.approx(0.001) and math.isnan(few.gap()[1])
