import math

import numpy as np
import pytest
import torch

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.measure.devices import DeviceError, fingerprint
from effvit_nas.measure.heap import huge_pages_note
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.timing import check_supported, cuda_event_timer, halve_on_oom, measure, prepare, time_forward, wall_timer
from tests.support import FAST_BENCH

FAST = {**FAST_BENCH, "min_iters": 5}
# One stage, one block: inductor generates and compiles C++ for every fused kernel, so a cold
# torch.compile of this took ~30 s on the 2-core test machine against 40-60 s for TINY.
ONE_STAGE = ArchConfig(widths=(16,), depths=(1,), heads=(1,), qk_dims=8, kernels=(3,), windows=4, img_size=32, num_classes=4)


def test_paper_defaults_per_device():
    cpu = BenchSettings.for_device("cpu")
    assert (cpu.batch, cpu.threads, cpu.precision, cpu.backend) == (16, 1, "fp32", "trace")
    gpu = BenchSettings.for_device("cuda")
    assert (gpu.batch, gpu.precision) == (2048, "fp16")
    assert BenchSettings.for_device("cuda", batch=64, precision="bf16").batch == 64
    with pytest.raises(UserError, match=r"BenchSettings\.batch must be positive"):
        BenchSettings.for_device("cpu", batch=0)


def test_protocol_key_tracks_every_setting():
    base = BenchSettings(batch=16)
    assert base.key() == BenchSettings(batch=16).key()
    for change in (dict(batch=8), dict(threads=2), dict(precision="bf16"), dict(backend="eager"), dict(measure_s=9.0)):
        assert BenchSettings(**{**dict(batch=16), **change}).key() != base.key()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch=0), "BenchSettings.batch"),
        (dict(batch=4, threads=0), "BenchSettings.threads"),
        (dict(batch=4, precision="fp8"), "precision"),
        (dict(batch=4, backend="tvm"), "backend"),
        (dict(batch=4, measure_s=0), "BenchSettings.measure_s"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(UserError, match=message):
        BenchSettings(**kwargs)


def test_unsupported_combinations():
    with pytest.raises(DeviceError, match="fp16 is not supported on cpu"):
        check_supported(BenchSettings(batch=4, precision="fp16"), "cpu")
    with pytest.raises(DeviceError, match="fp32 only"):
        check_supported(BenchSettings(batch=4, precision="bf16", backend="onnxruntime"), "cpu")
    with pytest.raises(DeviceError, match="no execution provider for fp32 on cuda: install onnxruntime-gpu"):
        check_supported(BenchSettings(batch=4, backend="onnxruntime"), "cuda:0")
    check_supported(BenchSettings(batch=4, precision="bf16"), "cpu")


@pytest.mark.parametrize("backend", ["eager", "trace", "onnxruntime", "compile"])
def test_measure_on_cpu(tiny, backend):
    config = ONE_STAGE if backend == "compile" else tiny
    s = BenchSettings(batch=4, backend=backend, **FAST)
    threads_before = torch.get_num_threads()
    m = measure(config, s, "cpu", fingerprint("cpu"))
    assert torch.get_num_threads() == threads_before  # restored
    assert m.config_hash == config.short_hash() and m.batch == 4
    # another process's load can disturb every window (it did, beside a training run): then the note says so;
    # this process (pytest's) did not start with huge pages asked for, as a device actor does, and says that
    assert (m.note == huge_pages_note()) == (m.disturbed < m.windows), (m.note, m.disturbed, m.windows)
    assert m.iterations >= 5 and m.throughput > 0 and math.isfinite(m.cv) and m.cv >= 0
    assert m.q1 <= m.q3 and m.q1 * 0.999 <= m.throughput <= m.q3 * 1.001
    assert m.settings["backend"] == backend and m.device["kind"] == "cpu"
    assert m.started < m.finished and m.seconds >= s.warmup_s + s.measure_s
    d = m.to_dict()
    for k in ("throughput", "cv", "batch", "threads", "precision", "backend", "device"):
        assert k in d


def test_a_ratio_reuses_a_prepared_reference(tiny, monkeypatch):
    """A table timing many configs against one anchor build (`reference_forward`) prepares only
    the config; the ratio is timed against the build it was given."""
    import effvit_nas.measure.timing as timing

    s = BenchSettings(batch=2, **FAST)
    built: list[str] = []
    real_prepare = timing.prepare
    monkeypatch.setattr(timing, "prepare", lambda c, *a: built.append(c.short_hash()) or real_prepare(c, *a))
    anchor = tiny.replace(widths=(8, 16, 24))
    one = real_prepare(anchor, s, "cpu", 2)
    calls: list[int] = []
    r = timing.measure_ratio(tiny, anchor, s, "cpu", fingerprint("cpu"), reference_forward=lambda: calls.append(1) or one())
    assert built == [tiny.short_hash()] and calls and r.pairs >= 2 and r.ratio > 0
    built.clear()
    timing.measure_ratio(tiny, anchor, s, "cpu", fingerprint("cpu"))
    assert built == [tiny.short_hash(), anchor.short_hash()]  # without it, both are built


def test_throughput_is_batch_over_median_time(tiny):
    m = measure(tiny, BenchSettings(batch=8, backend="eager", **FAST), "cpu", fingerprint("cpu"))
    # the median of per-iteration throughputs equals batch / median time (odd or even count)
    assert math.isclose(m.throughput, np.median([m.q1, m.q3]), rel_tol=0.5)


def test_bf16_autocast_on_cpu(tiny):
    """bf16 is recorded and really run: the prepared forward pass computes in bf16 (fp32 as control)."""
    m = measure(tiny, BenchSettings(batch=4, precision="bf16", backend="eager", **FAST), "cpu", fingerprint("cpu"))
    assert m.throughput > 0 and m.settings["precision"] == "bf16"
    # the output's dtype shows what the timed callable computes in, which the record cannot;
    # ONE_STAGE: building and tracing it four times costs ~1 s against ~3 s for tiny
    for backend in ("eager", "trace"):
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            forward = prepare(ONE_STAGE, BenchSettings(batch=1, precision=precision, backend=backend, **FAST), "cpu", 1)
            assert forward().dtype == dtype, (backend, precision)


def test_halve_on_oom_backs_off_until_it_fits():
    calls, freed = [], []

    def run(batch):
        calls.append(batch)
        if batch > 300:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return "ok"

    assert halve_on_oom(run, 2048, lambda: freed.append(1)) == ("ok", 256)
    assert calls == [2048, 1024, 512, 256] and len(freed) == 3


def test_halve_on_oom_gives_up_at_batch_one():
    def run(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        halve_on_oom(run, 4, lambda: None)


def test_other_errors_are_not_swallowed():
    def run(batch):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        halve_on_oom(run, 4, lambda: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["eager", "trace"])
def test_measure_on_gpu(tiny, backend):
    s = BenchSettings.for_device("cuda", batch=256, backend=backend, **FAST)
    m = measure(tiny, s, "cuda:0", fingerprint("cuda:0"))
    assert m.throughput > 0 and m.device["kind"] == "cuda" and m.settings["precision"] == "fp16"
    assert m.windows >= 1 and m.disturbed == 0  # no CPU-time test on GPU: waiting for the device is not interference


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ratio_mode_on_gpu(tiny):
    from effvit_nas.measure.timing import measure_ratio

    s = BenchSettings.for_device("cuda", batch=256, **FAST)
    r = measure_ratio(tiny, tiny, s, "cuda:0", fingerprint("cuda:0"))
    assert 0.5 < r.ratio < 2 and r.pairs >= 1 and r.throughput > 0 and r.reference_throughput > 0


def test_time_forward_uses_the_given_timer():
    calls = []
    s = BenchSettings(batch=1, warmup_s=0.0, measure_s=1e-9, min_iters=4)
    times = time_forward(lambda: calls.append(1), s, lambda: None, timed=lambda f: (f(), 0.25)[1]).times()
    assert len(times) >= 4 and set(times) == {0.25}
    assert len(calls) == 1 + len(times)  # the untimed first call, then one per timed iteration


def test_wall_timer_includes_the_sync():
    timed = wall_timer(lambda: __import__("time").sleep(0.05))
    assert timed(lambda: None) >= 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_time_inside_the_host_window():
    import time

    x = torch.randn(4096, 4096, device="cuda")
    forward = lambda: x @ x  # noqa: E731
    forward()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu = cuda_event_timer()(forward)
    host = time.perf_counter() - t0
    assert 0 < gpu <= host  # the events are recorded and waited for inside the host's window


def test_a_measurement_times_with_the_threads_asked_for_and_gives_them_back(tmp_path, monkeypatch):
    """`--threads 2`: torch runs 2 intra-op threads while the device is held, and the process's
    own setting is restored after (a 1-thread default would otherwise pass for 2)."""
    from effvit_nas.measure.timing import LOCK_DIR_ENV, on_device

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))  # a private lock: the session's actor may be timing
    before = torch.get_num_threads()
    for threads in (1, 2):
        with on_device(BenchSettings(batch=1, threads=threads), "cpu"):
            assert torch.get_num_threads() == threads
        assert torch.get_num_threads() == before
