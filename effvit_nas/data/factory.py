"""Which source a ``--data`` value names, and the one entry point that reads it (as timm's
``create_reader`` picks a reader): ``synthetic``, ``fashion-mnist``, or a directory recognised
by its layout, CIFAR python batches first, then MNIST-format IDX files, then an ImageFolder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from effvit_nas.data import cifar, idx, image_folder, synthetic
from effvit_nas.data.dataset import DataConfig, DataError, Dataset


def check_data(cfg: DataConfig) -> None:
    """Fail now as :func:`load_data` would (missing or unreadable data, too many classes), before
    a study is created on it rather than after. It reads one image per class, but an ImageFolder
    is still listed in full (seconds on ImageNet-size sets); synthetic data has nothing to check."""
    if cfg.source != "synthetic":
        load_data(replace(cfg, train_per_class=1, val_per_class=1))


def _synthetic(cfg: DataConfig) -> Dataset:
    c = cfg.num_classes or 10
    tensors = synthetic.generate(c, cfg.train_per_class or 500, cfg.val_per_class or 100, cfg.img_size, cfg.seed)
    return Dataset(*tensors, classes=[f"class{i}" for i in range(c)], source="synthetic")


def _directory(source: str) -> Path:
    """The directory ``source`` names (``fashion-mnist``: where Debian installs it)."""
    if source == idx.FASHION_MNIST and not idx.FASHION_MNIST_DIR.is_dir():
        raise DataError(
            f"Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist (it puts the files in {idx.FASHION_MNIST_DIR})"
        )
    root = idx.FASHION_MNIST_DIR if source == idx.FASHION_MNIST else Path(source)
    if not root.exists():
        raise DataError(f"data directory {source!r} does not exist (the source 'synthetic' generates data instead)")
    if not root.is_dir():
        raise DataError(f"data path {source!r} is not a directory")
    return root


def load_data(cfg: DataConfig) -> Dataset:
    """Materialise ``cfg`` (see :mod:`effvit_nas.data.dataset`). DataError on missing or malformed data."""
    if cfg.source == "synthetic":
        return _synthetic(cfg)
    root = _directory(cfg.source)
    batches = cifar.detect(root)
    if batches is not None:
        return cifar.load(root, cfg, batches)
    found = idx.idx_files(root)
    if found is not None:
        return idx.load_idx(root, found, cfg)
    if not image_folder.detect(root):
        raise DataError(
            f"{cfg.source}: unrecognised layout; expected train/ and val/ with class folders (ImageFolder) "
            "or CIFAR python batches (data_batch_1..5 + test_batch, or train + test) "
            "or MNIST-format files (train-images-idx3-ubyte[.gz], ...)"
        )
    return image_folder.load(root, cfg)
