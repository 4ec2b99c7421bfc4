"""A CIFAR-10/100 directory in its python-batch format (``data_batch_*`` + ``test_batch`` +
``batches.meta``, or CIFAR-100's ``train`` + ``test`` + ``meta``).

The batches are pickles, and a pickle can name any callable to run while it loads. A folder
given as ``--data`` is foreign input, so the batches are read by :class:`_ArrayUnpickler`, which
admits only what numpy arrays need (the array and scalar reconstructors, ``ndarray``, ``dtype``); lists,
dicts, strings and numbers need no lookup at all. Anything else (``os.system``, ``eval``, a class
of this package) is refused before it is called, as a :class:`~effvit_nas.data.dataset.DataError`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effvit_nas.data.dataset import DataConfig, DataError, Dataset, first_classes, resize_uint8, subsample

# (module, name) a numpy array's pickle refers to -> where numpy 2 keeps it (numpy 1 wrote numpy.core,
# numpy 2 writes numpy._core); _frombuffer is what protocol 5 uses for contiguous arrays, scalar what a
# list of numpy integers (labels written by numpy code) holds; _codecs.encode is how Python 3
# writes bytes at protocol 2 (a string to bytes, nothing run)
_ADMITTED: dict[tuple[str, str], tuple[str, str]] = {
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        admitted = _ADMITTED.get((module, name))
        if admitted is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays and plain containers are read)")
        return super().find_class(*admitted)


def _load_pickle(path: Path) -> Any:
    """The object pickled in ``path``, numpy arrays and plain containers only (Python 2 strings
    decoded as latin-1, as CIFAR's own loader does). DataError for anything else."""
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path} is not a CIFAR python batch: {type(e).__name__}: {e}") from None


def detect(root: Path) -> tuple[list[Path], list[Path], str] | None:
    """(training batches, test batches, label key) when ``root`` holds CIFAR python batches."""
    if (root / "data_batch_1").exists() and (root / "test_batch").exists():
        return sorted(root.glob("data_batch_*")), [root / "test_batch"], "labels"
    if (root / "train").is_file() and (root / "test").is_file():
        return [root / "train"], [root / "test"], "fine_labels"
    return None


def _batches(paths: list[Path], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        d = _load_pickle(p)
        try:
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[key]))
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise DataError(f"{p} is not a CIFAR python batch: {type(e).__name__}: {e}") from None
    return np.concatenate(xs), np.concatenate(ys)


def _class_names(meta: Path, count: int) -> list[str]:
    names = [f"class{i}" for i in range(count)]
    if not meta.exists():
        return names
    m = _load_pickle(meta)
    if not isinstance(m, dict):
        raise DataError(f"{meta} is not a CIFAR meta file: holds a {type(m).__name__}, not a dict")
    return [str(n) for n in (m.get("label_names") or m.get("fine_label_names") or names)]


def load(root: Path, cfg: DataConfig, files: tuple[list[Path], list[Path], str]) -> Dataset:
    """``cfg``'s subsample of the CIFAR batches ``files`` (what :func:`detect` found in ``root``)."""
    train_files, test_files, key = files
    x_tr, y_tr = _batches(train_files, key)
    x_va, y_va = _batches(test_files, key)
    n_cls = int(max(y_tr.max(), y_va.max())) + 1
    names = _class_names(root / ("batches.meta" if key == "labels" else "meta"), n_cls)
    k = first_classes(cfg, n_cls)
    i_tr = subsample(y_tr, k, cfg.train_per_class, cfg.seed)
    i_va = subsample(y_va, k, cfg.val_per_class, cfg.seed)
    return Dataset(
        train_x=resize_uint8(torch.as_tensor(x_tr[i_tr]), cfg.img_size),
        train_y=torch.as_tensor(y_tr[i_tr], dtype=torch.int64),
        val_x=resize_uint8(torch.as_tensor(x_va[i_va]), cfg.img_size),
        val_y=torch.as_tensor(y_va[i_va], dtype=torch.int64),
        classes=names[:k],
        source=str(root),
    )
