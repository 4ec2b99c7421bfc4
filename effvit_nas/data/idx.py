"""MNIST-format image sets (IDX files: Fashion-MNIST, MNIST, KMNIST...), read by torchvision.

A directory qualifies when it holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped (as
Debian's ``dataset-fashion-mnist`` installs them). torchvision's ``FashionMNIST`` dataset
class reads them (it wants them uncompressed under ``<root>/FashionMNIST/raw``, so gzipped
files are decompressed once into a cache folder). The official test split is the held-out
split; grayscale is replicated to 3 channels and resized to the requested size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import torch

from effvit_nas.data.dataset import DataError, Dataset, first_classes, resize_uint8, subsample

FASHION_MNIST = "fashion-mnist"  # the --data name of the Debian package's files
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_files(root: Path) -> dict[str, Path] | None:
    """The four IDX files in ``root`` (plain or ``.gz``), or None when ``root`` has none of them."""
    found = {}
    for name in FILES:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found or None


def _cache_root(files: dict[str, Path]) -> Path:
    """Where the uncompressed copies live: keyed by the sources' paths, sizes and times, so a
    changed source is decompressed again."""
    key = hashlib.sha256("|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values()).encode())
    base = Path(os.environ.get("EFFVIT_NAS_CACHE", Path.home() / ".cache" / "effvit-nas"))
    return base / "idx" / key.hexdigest()[:16]


def _materialise(files: dict[str, Path]) -> Path:
    """A torchvision root holding the files uncompressed (decompressed or copied once)."""
    root = _cache_root(files)
    raw = root / "FashionMNIST" / "raw"
    for name, src in files.items():
        dst = raw / name
        if dst.is_file():
            continue
        raw.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(f"{name}.{os.getpid()}.part")  # concurrent readers never see half a file
        try:
            with gzip.open(src, "rb") if src.suffix == ".gz" else open(src, "rb") as f, open(part, "wb") as g:
                shutil.copyfileobj(f, g)
        except (OSError, EOFError) as e:
            part.unlink(missing_ok=True)
            raise DataError(f"{src} is truncated or corrupt ({type(e).__name__}: {e}); reinstall it") from None
        part.replace(dst)
    return root


def _read(files: dict[str, Path], root: Path) -> tuple:
    """(train images, train labels, test images, test labels) as torchvision reads them."""
    from torchvision.datasets import FashionMNIST  # lazy: torchvision loads torch

    cache = _materialise(files)
    try:
        splits = [FashionMNIST(str(cache), train=train, download=False) for train in (True, False)]
    except (RuntimeError, ValueError, AssertionError) as e:
        raise DataError(f"{root}: the MNIST-format files are truncated or corrupt ({str(e).splitlines()[0]}); reinstall them") from None
    for s, split in zip(splits, ("train", "t10k"), strict=True):
        if len(s.data) != len(s.targets):
            raise DataError(f"{root}: {split} has {len(s.data)} images but {len(s.targets)} labels")
    return splits[0].data, splits[0].targets, splits[1].data, splits[1].targets


def load_idx(root: Path, files: dict[str, Path], cfg) -> Dataset:
    """``cfg``'s subsample of an MNIST-format set: 3-channel uint8 at ``cfg.img_size``."""
    missing = [n for n in FILES if n not in files]
    if missing:
        raise DataError(f"{root}: MNIST-format files missing: {', '.join(missing)} (plain or .gz)")
    x_tr, y_tr, x_te, y_te = _read(files, root)
    n_cls = int(max(y_tr.max(), y_te.max())) + 1
    names = list(FASHION_MNIST_CLASSES) if root.resolve() == FASHION_MNIST_DIR.resolve() else [str(i) for i in range(n_cls)]
    k = first_classes(cfg, n_cls)

    def take(x: torch.Tensor, y: torch.Tensor, per_class: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(subsample(y.numpy(), k, per_class, cfg.seed))
        gray = resize_uint8(x[idx].unsqueeze(1), cfg.img_size)  # resized once, in one channel
        return gray.repeat(1, 3, 1, 1), y[idx].to(torch.int64)

    train_x, train_y = take(x_tr, y_tr, cfg.train_per_class)
    val_x, val_y = take(x_te, y_te, cfg.val_per_class)
    return Dataset(train_x, train_y, val_x, val_y, names[:k], str(root))
