"""Image-classification data for proxies and training, always offline: what every source
yields (:class:`Dataset`, in-memory uint8 tensors at the proxy resolution, so a proxy's steps cost
model compute only, not JPEG decoding), how much of it (:class:`DataConfig`), and the subsampling
every source shares (first K classes, at most N images per class keeps proxies cheap).

The sources, one module each, chosen by :func:`effvit_nas.data.factory.load_data`:
:mod:`~effvit_nas.data.synthetic` (generated), :mod:`~effvit_nas.data.image_folder` (ImageNet
layout), :mod:`~effvit_nas.data.cifar` (python batches, read without running foreign code),
:mod:`~effvit_nas.data.idx` (MNIST-format files, Fashion-MNIST); training can stream an
ImageFolder instead (:mod:`~effvit_nas.data.streaming`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from effvit_nas.arch.config import MAX_IMG_SIZE
from effvit_nas.data.synthetic import MAX_CLASSES
from effvit_nas.errors import SettingError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(UserError):
    """Missing, empty or wrongly laid out data."""


@dataclass(frozen=True)
class DataConfig:
    """Which data, at which resolution, how much of it.

    Attributes:
        source: ``synthetic``, ``fashion-mnist`` or a directory (ImageFolder, CIFAR python
            batches or MNIST-format IDX files).
        img_size: side of the square images handed to models, px (default 64).
        num_classes: synthetic: number of classes (default 10); directories: keep the first
            K classes (default: all).
        train_per_class: at most this many training images per class (synthetic: exactly;
            default 500 synthetic, all for directories).
        val_per_class: at most this many held-out images per class (default 100 synthetic,
            all for directories).
        seed: synthetic generation and subsampling seed.
    """

    source: str = "synthetic"
    img_size: int = 64
    num_classes: int | None = None
    train_per_class: int | None = None
    val_per_class: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.img_size <= MAX_IMG_SIZE:
            raise SettingError("DataConfig.img_size", f"must be between 16 and {MAX_IMG_SIZE} px, got {self.img_size}")
        for name in ("num_classes", "train_per_class", "val_per_class"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SettingError(f"DataConfig.{name}", f"must be positive, got {v}")
        if self.source == "synthetic" and self.num_classes is not None and not 2 <= self.num_classes <= MAX_CLASSES:
            raise SettingError("DataConfig.num_classes", f"must be between 2 and {MAX_CLASSES} for synthetic data, got {self.num_classes}")


@dataclass
class Dataset:
    """Train and held-out splits as uint8 NCHW tensors with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_count(self) -> int:
        return len(self.train_x)

    @property
    def img_size(self) -> int:
        return int(self.train_x.shape[-1])


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, ImageNet mean/std normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def first_classes(cfg: DataConfig, available: int) -> int:
    """How many classes of a data set with ``available`` classes ``cfg`` keeps (all by default);
    asking for more than there are is refused rather than silently cut to what is there."""
    if cfg.num_classes is not None and cfg.num_classes > available:
        raise SettingError("DataConfig.num_classes", f"asks for {cfg.num_classes} classes; {cfg.source} has {available}")
    return cfg.num_classes or available


def subsample(labels: np.ndarray, classes: int, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` items of each of the first ``classes`` labels."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        if per_class is not None and len(idx) > per_class:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        keep.append(idx)
    return np.concatenate(keep)


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8)
