import pytest

from tests.support import FAST_BENCH


@pytest.fixture(scope="package")
def cpu_worker(local_ray):
    """The ``cpu`` device actor (1 thread), held for the measurement tests so that they, and the
    in-process CLI runs, share one actor instead of starting one (a process importing torch and
    timm: seconds) per test. Killed afterwards so that its CPU is free for the other packages."""
    from effvit_nas.measure.actor import get_worker
    from effvit_nas.measure.settings import BenchSettings

    worker = get_worker("cpu", BenchSettings(batch=4, **FAST_BENCH))
    yield worker
    local_ray.kill(worker)
