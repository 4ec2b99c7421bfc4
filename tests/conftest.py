import subprocess

import pytest

from effvit_nas.arch.config import ArchConfig
from tests.support import FAST_BENCH, TINY


@pytest.fixture(scope="session", autouse=True)
def _lean_ray_train():
    """Ray Train's controller polls its workers every 2 s by default, so each run ends up to 2 s
    after its last epoch; and each run starts a preemption watcher (one more actor process,
    seconds of CPU on these 2 cores: ~12 s per run before the environment was compiled) that waits for a node drain a test's local node never sees.
    Both are read from the environment of the process that starts the run, and of the
    subprocesses tests start."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
        mp.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        yield


@pytest.fixture(scope="session", autouse=True)
def _private_device_lock(tmp_path_factory):
    """This pytest process's own device lock. The machine-wide lock keeps timings from disturbing
    each other; no test judges a timing, so the suite's workers (pytest-xdist) need not wait for
    each other's (the lock holds a model's whole preparation too: ExecuTorch lowers one for about
    a minute). Set before the session's Ray starts, so its actors and the CLI subprocesses tests
    start inherit it; the lock's own tests set theirs. So a suite no longer waits for a real
    `bench` timing on the same machine either (nor that one for the suite)."""
    from effvit_nas.measure.timing import LOCK_DIR_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LOCK_DIR_ENV, str(tmp_path_factory.mktemp("device-locks")))
        yield


@pytest.fixture
def m0() -> ArchConfig:
    from effvit_nas.arch.config import PRESETS

    return PRESETS["M0"]


@pytest.fixture
def tiny() -> ArchConfig:
    """A small valid config that measures in well under a second per iteration."""
    return TINY


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session (starting one costs several seconds)."""
    from effvit_nas.runtime import import_ray

    ray = import_ray()

    from effvit_nas.measure.actor import connect

    connect(None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session, started by runners/postgres.sh.

    ``$EFFVIT_TEST_POSTGRES_URL`` points at an existing server instead. Without PostgreSQL
    binaries the tests skip, unless ``$EFFVIT_REQUIRE_POSTGRES`` is set (CI sets it).
    """
    import os
    from pathlib import Path

    if os.environ.get("EFFVIT_TEST_POSTGRES_URL"):
        yield os.environ["EFFVIT_TEST_POSTGRES_URL"]
        return
    script = Path(__file__).resolve().parent.parent / "runners" / "postgres.sh"
    # one server per pytest-xdist worker (gw0, gw1, ...): each worker's session stops its own
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    port = int(os.environ.get("EFFVIT_TEST_PG_PORT", "5439")) + worker
    env = {**os.environ, "EFFVIT_PG_PORT": str(port)}
    r = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        msg = f"no PostgreSQL server could be started: {r.stderr.strip() or r.stdout.strip()}"
        if os.environ.get("EFFVIT_REQUIRE_POSTGRES"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield r.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, timeout=120)


SMALL_STUDY_BUDGET = "0.3xM0"


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, request):
    """A finished 8-trial search in the tiny space, shared by the report/export/training tests:
    (storage URL, study name). Its budget is 0.3x M0 measured in the same run (tiny-space
    models run 1-3x M0's speed), never a fixed figure a slower machine could miss. Searched
    once per suite run: the first pytest-xdist worker that needs it searches while holding a
    lock, and each worker gets its own copy (some tests write to the study)."""
    import fcntl
    import os
    import sqlite3
    from contextlib import closing

    mine = tmp_path_factory.mktemp("study") / "s.db"
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: nothing to share
        _search_small_study(f"sqlite:///{mine}", request.getfixturevalue("local_ray"))
        return f"sqlite:///{mine}", "small"
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, the same for every worker
    searched, done = shared / "small_study.db", shared / "small_study.done"
    with open(shared / "small_study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            searched.unlink(missing_ok=True)  # a worker that failed half-way
            _search_small_study(f"sqlite:///{searched}", request.getfixturevalue("local_ray"))
            done.touch()
    with closing(sqlite3.connect(searched)) as src, closing(sqlite3.connect(mine)) as dst:
        src.backup(dst)  # the database as committed, whatever journal it keeps
    return f"sqlite:///{mine}", "small"


def _search_small_study(url: str, _ray) -> None:
    from effvit_nas.arch.space import load_space
    from effvit_nas.data import DataConfig
    from effvit_nas.measure.actor import LazyWorker
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.search.budget import study_budget
    from effvit_nas.search.loop import run_search
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem

    bench = BenchSettings(batch=16, **FAST_BENCH)
    options = RunOptions(study="small", storage=url, trials=8, sampler="random", heartbeat_s=1, workers=2)  # proxies as parallel Ray tasks
    device = LazyWorker("cpu", bench)  # one device actor for the budget and the search, as the CLI
    budget = study_budget(SMALL_STUDY_BUDGET, load_space("tiny"), "cpu", bench, options, device)
    problem = SearchProblem(  # the space as the CLI records it, so CLI runs can resume this study
        device="cpu",
        budget=budget.images_per_s,
        budget_spec=budget.spec,
        budget_reference=budget.reference,
        space=load_space("tiny").source,
        proxy="naswot",
        data=DataConfig(img_size=32, num_classes=4, train_per_class=16, val_per_class=8),
        bench=bench,
    )
    summary = run_search(problem, options)
    device.release()
    assert summary.complete == 8
