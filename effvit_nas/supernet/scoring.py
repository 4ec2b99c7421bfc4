"""Scoring a candidate with inherited weights: extract, recalibrate BatchNorm, evaluate.

BatchNorm running statistics in a supernet mix every subnet that ran through a layer (and
the QKV projections' are not written back at all), so a subnet's own statistics are
re-estimated on ``calibration_images`` training images before it is evaluated (OFA and
BigNAS do the same); the weights are not touched.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.data import Dataset, normalize
from effvit_nas.errors import UserError
from effvit_nas.model.accuracy import evaluate
from effvit_nas.model.weights import read_weights
from effvit_nas.supernet.model import Supernet

# a trained supernet folder: the shared weights, the space they cover, how they were trained
WEIGHTS_FILE, SPACE_FILE, RECORD_FILE = "supernet.safetensors", "space.yaml", "supernet.json"


@torch.no_grad()
def recalibrate_bn(net: nn.Module, images: torch.Tensor, batch: int = 128) -> None:
    """Re-estimate every BatchNorm's running mean and variance of ``net`` on the uint8 NCHW
    ``images`` (cumulative average over the batches); leaves ``net`` in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a plain average over all calibration batches
    device = next(net.parameters()).device
    net.train()
    for i in range(0, len(images), batch):
        net(normalize(images[i : i + batch].to(device)).contiguous(memory_format=torch.channels_last))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()


def calibration_images(data: Dataset, count: int, seed: int) -> torch.Tensor:
    """``count`` training images drawn with ``seed`` (all of them when fewer)."""
    g = torch.Generator().manual_seed(seed)
    return data.train_x[torch.randperm(len(data.train_x), generator=g)[:count]]


def subnet_top1(supernet: Supernet, config: ArchConfig, data: Dataset, calibration: int, seed: int) -> float:
    """Held-out top-1 in [0, 1] of ``config`` with its inherited weights, BN recalibrated.

    ``config`` is rebuilt at the space's class count; its own resolution decides the input
    size (the held-out images are resized when the data's differs)."""
    net = supernet.extract(config).to(memory_format=torch.channels_last)
    images = calibration_images(data, calibration, seed)
    val = data.val_x
    if config.img_size != data.img_size:
        images, val = (_resize(t, config.img_size) for t in (images, val))
    recalibrate_bn(net, images)
    device = next(net.parameters()).device
    return evaluate(net, val.to(device), data.val_y.to(device))


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    x = torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=2)
def _load(folder: str, stamp: tuple[int, int]) -> tuple[Supernet, str]:
    path = Path(folder)
    space = load_space(path / SPACE_FILE)
    weights = path / WEIGHTS_FILE
    # a damaged file is one line naming it, before the (large) supernet is built
    tensors = read_weights(
        weights, f"train the supernet again (`effvit-nas supernet train --out {path}`) or point supernet: at another folder"
    )
    net = Supernet(space)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:  # another space's weights under this space.yaml
        raise UserError(f"{weights} does not match {path / SPACE_FILE}: {str(e).splitlines()[0]}") from None
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    return net.eval(), digest


def load_supernet(folder: str | Path) -> tuple[Supernet, str]:
    """The trained supernet in ``folder`` (what ``supernet train`` leaves) and a 12-hex digest
    of its weights; loaded once per process while the weights file is unchanged."""
    path = Path(folder).resolve()
    missing = [f for f in (WEIGHTS_FILE, SPACE_FILE) if not (path / f).is_file()]
    if missing:
        raise UserError(f"{str(folder)!r} is not a trained supernet folder (no {missing[0]}; `effvit-nas supernet train` writes one)")
    stat = (path / WEIGHTS_FILE).stat()
    return _load(str(path), (stat.st_mtime_ns, stat.st_size))
