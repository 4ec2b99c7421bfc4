"""Training data read from disk as it is used: an ImageFolder (``train/``, ``val/``) of any size.

The in-memory path (:func:`effvit_nas.data.load_data`) decodes every image once into a
uint8 tensor that the driver ships to each worker: fine for Fashion-MNIST or a subset, not for
ImageNet. :class:`FolderData` holds only where the images are and which of them are used; each
Ray Train worker lists the folder itself and its DataLoader workers decode, augment (timm's
training transform) and batch images as the sampler asks for them, so memory does not grow with
the number of images. Held-out images get the paper's evaluation crop (resize to
``img_size / 0.875``, centre crop, bicubic: timm's eval transform).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effvit_nas.data.dataset import DataConfig, DataError, first_classes, subsample
from effvit_nas.data.factory import load_data

EVAL_CROP = 0.875  # DeiT / EfficientViT: 224 centre crop of the image resized to 256


def _folder(root: Path, split: str) -> Any:
    from torchvision.datasets import ImageFolder  # lazy: torchvision loads torch

    d = root / split
    if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
        raise DataError(f"{d} has no class folders (--stream reads {root}/train/<class>/... and {root}/val/<class>/...)")
    try:
        return ImageFolder(str(d))
    except FileNotFoundError as e:  # a class folder without images
        raise DataError(f"{d}: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class FolderData:
    """An ImageFolder used straight from disk; what :class:`~effvit_nas.data.Dataset`
    is for data held in memory (``num_classes``, ``img_size``, ``train_count``, ``classes``).

    Build it with :meth:`scan`; it pickles small (no image, no file list) and lists the folder
    again where it is used, with the same subsampling (``cfg.seed``)."""

    cfg: DataConfig
    classes: tuple[str, ...]
    train_count: int
    val_count: int

    @classmethod
    def scan(cls, cfg: DataConfig) -> FolderData:
        """Check the layout of ``cfg.source`` and count what ``cfg`` selects (DataError when it
        is no ImageFolder or its splits name different classes)."""
        root = Path(cfg.source)
        if not root.is_dir():
            raise DataError(f"--stream reads an ImageFolder directory (train/, val/); {cfg.source!r} is not a directory")
        train, val = _folder(root, "train"), _folder(root, "val")
        if val.classes[: len(train.classes)] != train.classes:
            raise DataError(f"{root}: class folders of val/ differ from train/ ({val.classes[:3]}... vs {train.classes[:3]}...)")
        data = cls(cfg, tuple(train.classes[: first_classes(cfg, len(train.classes))]), 0, 0)
        return cls(cfg, data.classes, len(data._indices(train, "train")), len(data._indices(val, "val")))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def img_size(self) -> int:
        return self.cfg.img_size

    @property
    def source(self) -> str:
        return self.cfg.source

    def _indices(self, folder: Any, split: str) -> list[int]:
        per = self.cfg.train_per_class if split == "train" else self.cfg.val_per_class
        return subsample(np.asarray(folder.targets), self.num_classes, per, self.cfg.seed).tolist()

    def split(self, split: str, transform: Any) -> Any:
        """The ``train`` or ``val`` images this config selects, decoded by ``transform`` on access."""
        from torch.utils.data import Subset  # lazy: torch costs seconds to import

        folder = _folder(Path(self.cfg.source), split)
        folder.transform = transform
        return Subset(folder, self._indices(folder, split))

    def train_set(self, transform: Any, resize_first: bool) -> Any:
        """The training images through ``transform`` (timm's training transform);
        ``resize_first``: bring each image to ``img_size`` with the evaluation crop before it,
        as the in-memory path does, so that a padded random crop (``crop_pad``) sees what it
        would see there."""
        if resize_first:
            from torchvision import transforms  # lazy: torchvision loads torch

            size = self.img_size
            bicubic = transforms.InterpolationMode.BICUBIC
            transform = transforms.Compose([transforms.Resize(int(size / EVAL_CROP), bicubic), transforms.CenterCrop(size), transform])
        return self.split("train", transform)

    def eval_transform(self) -> Any:
        from timm.data import create_transform  # lazy: timm loads torch

        return create_transform(self.img_size, is_training=False, crop_pct=EVAL_CROP, interpolation="bicubic")


def training_data(cfg: DataConfig, stream: bool) -> Any:
    """What the training workers read: :class:`FolderData` when ``stream``, else the data
    materialised in memory (:func:`effvit_nas.data.load_data`)."""
    return FolderData.scan(cfg) if stream else load_data(cfg)
