"""Helpers the tests import (fixtures live in conftest.py)."""

import functools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.measure.settings import Measurement


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


TINY = ArchConfig(widths=(16, 32, 48), depths=(1, 1, 1), heads=(2, 2, 2), qk_dims=8, kernels=(5, 3), windows=4, img_size=64, num_classes=10)


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


FAST_BENCH = {"warmup_s": 0.1, "measure_s": 0.3, "window_s": 0.05}


# A real search small enough for a test: the tiny space at 32 px, 4 classes, short timings.
TINY_SEARCH = [
    "--space",
    "tiny",
    "--device",
    "cpu",
    "--img-size",
    "32",
    "--classes",
    "4",
    "--train-per-class",
    "16",
    "--val-per-class",
    "8",
    "--warmup",
    "0.1",
    "--window",
    "0.05",
    "--duration",
    "0.3",
    "--heartbeat",
    "1",
]


def held_cpu_actor(ray):
    """The ``cpu`` device actor (1 thread), started now and held until the generator ends, so
    that a package's tests and their in-process and joined CLI runs share one actor instead
    of starting one (a process importing torch and timm: seconds) per search. Killed at the
    end so that its CPU is free for the other packages (training needs both)."""
    from effvit_nas.measure.actor import get_worker
    from effvit_nas.measure.settings import BenchSettings

    worker = get_worker("cpu", BenchSettings(batch=4, **FAST_BENCH))
    yield worker
    ray.kill(worker)


def make_image_folder(root, classes=("cat", "dog", "emu"), per=4, size=40):
    """An ImageFolder (train/ and val/, one folder per class) of ``per`` flat PNGs per class."""
    for split in ("train", "val"):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for j in range(per):
                arr = np.full((size, size + 8, 3), 40 * i + j, dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{j}.png")


def patch_everywhere(monkeypatch, module, name: str, value) -> None:
    """Replace ``module.name`` and every binding of the same object that a module of the package
    imported by name (``from module import name``), so that callers in other modules see it too."""
    import sys

    original = getattr(module, name)
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("effvit_nas") and getattr(mod, name, None) is original:
            monkeypatch.setattr(mod, name, value)


# --- the search without Ray or real timings (tests/search) ------------------------------------
FAKE_BUDGET = 1000.0


def fake_measurement(config: ArchConfig, throughput: float) -> Measurement:
    """A measurement of ``config`` at ``throughput`` img/s, as the device actor would return it."""
    return Measurement(
        config_hash=config.short_hash(),
        throughput=throughput,
        q1=0.9 * throughput,
        q3=1.1 * throughput,
        cv=0.01,
        iterations=10,
        batch=16,
        seconds=0.1,
        settings={},
        device={"id": "fake-device"},
        config=config.to_dict(),
    )


def fake_problem_options(tmp_path, **kw):
    """(problem, options) of a search over the tiny space scored by the params proxy, in a fresh SQLite file."""
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem

    problem = SearchProblem(device="cpu", budget=FAKE_BUDGET, space="tiny", proxy="params")
    return problem, RunOptions(**{"study": "fake", "storage": f"sqlite:///{tmp_path}/f.db", "sampler": "random", "heartbeat_s": 1, **kw})


def width_load(config: ArchConfig) -> int:
    """A stand-in for a config's cost: its channels times blocks."""
    return sum(w * d for w, d in zip(config.widths, config.depths, strict=True))


@functools.cache
def _median_load() -> float:
    """The median :func:`width_load` of 64 configs drawn from the tiny space."""
    space, rng = load_space("tiny"), np.random.default_rng(0)
    return float(np.median([width_load(space.sample(rng)) for _ in range(64)]))


def by_width(config: ArchConfig) -> Measurement:
    """Fewer channels, faster, scaled so that the median tiny config runs at the budget: about
    half the tiny space is within it."""
    return fake_measurement(config, FAKE_BUDGET * _median_load() / width_load(config))


def fake_proxies(jobs):
    """Proxy results for ``jobs``: log of the widths' sum; one width/depth combination crashes."""
    for c in (j.config for j in jobs):
        yield (
            ValueError("proxy crashed")
            if c.widths[0] == 32 and c.depths[0] == 2
            else {"value": math.log(sum(c.widths)), "proxy": "fake", "seconds": 0.0}
        )


ONE_POINT_SPACE = (
    "name: one\nstages: 3\nheads: [2]\nhead_dims: [16]\ndepths: [1]\nqk_dims: [8]\nv_ratios: [1.0]\n"
    "ffn_ratios: [2.0]\nwindows: [4]\nkernels: [[3, 3]]\nimg_sizes: [64]\nnum_classes: 10\n"
)


def tiny_search_settings(url: str, study: str, budget: float = 300.0, **kw):
    """(problem, options) of a small real search in the tiny space."""
    from effvit_nas.data import DataConfig
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem

    problem = SearchProblem(
        device="cpu",
        budget=budget,
        space="tiny",
        proxy="naswot",
        data=DataConfig(img_size=32, num_classes=4, train_per_class=16, val_per_class=8),
        bench=BenchSettings(batch=16, **FAST_BENCH),
    )
    return problem, RunOptions(**{"study": study, "storage": url, "sampler": "random", "heartbeat_s": 1, **kw})


def private_copy(small_study: tuple[str, str], tmp_path: Path) -> str:
    """A private copy of the shared study database (conftest's ``small_study``), for tests that
    add to it: the shared one must look the same to every test, in any order."""
    src = small_study[0].removeprefix("sqlite:///")
    shutil.copy(src, tmp_path / "copy.db")
    return f"sqlite:///{tmp_path}/copy.db"
