import subprocess
import sys

import pytest
import torch

from effvit_nas.config import ArchConfig


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN non-trivial statistics/affine and the attention biases random values.

    Freshly built models have BN weights of 0 closing each residual branch, so without this
    a parity or fusion check would pass even with the branches computed wrongly.
    """
    g = torch.Generator().manual_seed(seed)

    def u(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            u(m.weight, 0.5, 1.5)
            u(m.bias, -0.2, 0.2)
            u(m.running_mean, -0.2, 0.2)
            u(m.running_var, 0.5, 2.0)
    for name, p in model.named_parameters():
        if "attention_biases" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effvit_nas.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def m0() -> ArchConfig:
    from effvit_nas.config import PRESETS

    return PRESETS["M0"]


TINY = ArchConfig(widths=(16, 32, 48), depths=(1, 1, 1), heads=(2, 2, 2), qk_dims=8, kernels=(5, 3), windows=4, img_size=64, num_classes=10)


@pytest.fixture
def tiny() -> ArchConfig:
    """A small valid config that measures in well under a second per iteration."""
    return TINY


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session (starting one costs several seconds)."""
    import ray

    from effvit_nas.workers import connect

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
    env = {**os.environ, "EFFVIT_PG_PORT": os.environ.get("EFFVIT_TEST_PG_PORT", "5439")}
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


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """The CLI in this process (no interpreter start, the session's Ray): exit code, stdout, stderr."""
    from effvit_nas.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


FAST_BENCH = {"warmup_s": 0.1, "measure_s": 0.3}


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, local_ray):
    """A finished 8-trial search in the tiny space (2k img/s budget),
    shared by the report/export/training tests: (storage URL, study name)."""
    from effvit_nas.data import DataConfig
    from effvit_nas.search import SearchSettings, run_search
    from effvit_nas.throughput import BenchSettings

    from effvit_nas.space import load_space

    url = f"sqlite:///{tmp_path_factory.mktemp('study')}/s.db"
    settings = SearchSettings(  # the space as the CLI records it, so CLI runs can resume this study
        device="cpu", budget=2000.0, study="small", storage=url, space=load_space("tiny").source, proxy="naswot",
        data=DataConfig(img_size=32, num_classes=4, train_per_class=16, val_per_class=8),
        bench=BenchSettings(batch=16, **FAST_BENCH), trials=8, sampler="random", heartbeat_s=1,
    )
    summary = run_search(settings)
    assert summary.complete == 8
    return url, "small"
