import pytest

from tests.support import held_cpu_actor


@pytest.fixture(scope="package")
def cpu_worker(local_ray):
    """The measurement tests' shared device actor (see :func:`tests.support.held_cpu_actor`)."""
    yield from held_cpu_actor(local_ray)
