"""An ImageFolder directory (ImageNet layout: ``train/`` and ``val/`` with one folder per class),
listed by timm's reader and resized/cropped by timm's eval transform.

Corrupt images: each image is decoded here rather than through timm's ``ImageDataset``, which
silently substitutes the next file for one it cannot read (so a corrupt image would be counted
under its neighbour's label). An image that does not decode is skipped, and one warning per
split says how many were; a split none of whose chosen images decodes is refused with a
:class:`~effvit_nas.data.dataset.DataError` naming the folder and the count (one ``error:`` line
on the command line). Skipping rather than refusing keeps a large set with a few damaged files
usable; the warning makes the smaller classes visible.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from effvit_nas.data.dataset import DataConfig, DataError, Dataset, first_classes, subsample

_log = logging.getLogger(__name__)


def detect(root: Path) -> bool:
    """Whether ``root`` is laid out as an ImageFolder (``train/`` and ``val/`` folders)."""
    return (root / "train").is_dir() and (root / "val").is_dir()


def _class_dirs(root: Path, split: str) -> list[Path]:
    d = root / split
    class_dirs = sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    if not class_dirs:
        raise DataError(f"{d} has no class folders (expected {root}/train/<class>/... and {root}/val/<class>/...)")
    for p in class_dirs:
        if not any(q.is_file() for q in p.iterdir()):
            raise DataError(f"class folder {p} is empty")
    return class_dirs


def _decode(path: Any) -> Image.Image | None:
    """The RGB image at ``path``; None when it does not decode (PIL raises OSError for truncated
    and unidentified files, ValueError and SyntaxError for some malformed headers, its own error
    for a decompression bomb)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _split(root: Path, split: str, cfg: DataConfig, classes: list[str] | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from timm.data import create_dataset, create_transform  # lazy: timm's data stack costs start-up time

    d = root / split
    class_dirs = _class_dirs(root, split)
    ds = create_dataset("", root=str(d), split=split)
    names = list(ds.reader.class_to_idx) if hasattr(ds.reader, "class_to_idx") else [p.name for p in class_dirs]
    if classes is not None and names[: len(classes)] != classes:
        raise DataError(f"{d}: class folders differ from train/ ({names[:3]}... vs {classes[:3]}...)")
    k = first_classes(cfg, len(names))
    labels = np.array([t for _, t in ds.reader.samples])
    per = cfg.train_per_class if split == "train" else cfg.val_per_class
    idx = subsample(labels, k, per, cfg.seed)
    tf = create_transform(cfg.img_size, is_training=False, crop_pct=0.875, interpolation="bicubic", mean=(0, 0, 0), std=(1, 1, 1))
    xs, kept = [], []
    for i in idx:
        img = _decode(ds.reader.samples[int(i)][0])
        if img is not None:
            xs.append((tf(img) * 255).round().clamp(0, 255).to(torch.uint8))
            kept.append(int(i))
    failed = len(idx) - len(kept)
    if not kept:
        raise DataError(f"{d}: none of the {failed} images read decodes (corrupt or not images)")
    if failed:
        _log.warning("warning: %s: skipped %d of %d images that do not decode (corrupt or not images)", d, failed, len(idx))
    return torch.stack(xs), torch.as_tensor(labels[kept], dtype=torch.int64), names[:k]


def load(root: Path, cfg: DataConfig) -> Dataset:
    """``cfg``'s subsample of the ImageFolder at ``root``."""
    x_tr, y_tr, classes = _split(root, "train", cfg, None)
    x_va, y_va, _ = _split(root, "val", cfg, classes)
    return Dataset(x_tr, y_tr, x_va, y_va, classes, str(root))
