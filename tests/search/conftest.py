import pytest

from tests.support import held_cpu_actor


@pytest.fixture(scope="package", autouse=True)
def cpu_worker(local_ray):
    """One device actor for every search of this package (see :func:`tests.support.held_cpu_actor`)."""
    yield from held_cpu_actor(local_ray)
