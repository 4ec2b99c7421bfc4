"""MNIST-format data: the real Fashion-MNIST files of Debian's dataset-fashion-mnist (CI
installs the package), and small IDX sets written here for the error paths."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from effvit_nas.data import DataConfig, DataError, load_data
from effvit_nas.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR
from effvit_nas.errors import SettingError
from tests.support import TINY, run_main

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist (.ci/run installs it)")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    """Decompressed copies go to a test folder, not the user's cache."""
    monkeypatch.setenv("EFFVIT_NAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, split: str, gz: bool) -> None:
    """IDX files as the MNIST format defines them: magic, dimensions (big-endian), uint8 data."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        f"{split}-images-idx3-ubyte": struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes(),
        f"{split}-labels-idx1-ubyte": struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes(),
    }
    for name, blob in blobs.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)


def small_set(folder: Path, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 12)):
        labels = np.arange(n) % 3
        write_idx(folder, rng.integers(0, 256, (n, 28, 28)), labels, split, gz)


def test_fashion_mnist_by_name_is_the_official_split():
    data = load_data(DataConfig("fashion-mnist", img_size=32, train_per_class=20, val_per_class=10))
    assert data.train_x.shape == (200, 3, 32, 32) and data.val_x.shape == (100, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.classes == list(FASHION_MNIST_CLASSES)
    assert torch.equal(data.train_x[:, 0], data.train_x[:, 2])  # grayscale replicated
    assert torch.bincount(data.val_y).tolist() == [10] * 10 and data.val_x.float().std() > 20
    # the held-out images are the official test images: they are not among the training images
    assert not any(torch.equal(v, t) for v in data.val_x[:5] for t in data.train_x)


def test_a_directory_of_idx_files_plain_or_gzipped(tmp_path):
    small_set(tmp_path / "gz")
    small_set(tmp_path / "plain", gz=False)
    a = load_data(DataConfig(str(tmp_path / "gz"), img_size=28))
    b = load_data(DataConfig(str(tmp_path / "plain"), img_size=28))
    assert a.classes == ["0", "1", "2"] and torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert len(a.train_y) == 30 and len(a.val_y) == 12
    assert load_data(DataConfig(str(tmp_path / "gz"), img_size=28, num_classes=2, train_per_class=4)).train_x.shape[0] == 8


def test_more_classes_than_the_data_has_are_refused_not_cut(tmp_path, capsys):
    small_set(tmp_path / "gz")  # 3 classes
    with pytest.raises(SettingError, match="asks for 5 classes") as e:
        load_data(DataConfig(str(tmp_path / "gz"), img_size=28, num_classes=5))
    assert e.value.setting == "DataConfig.num_classes"
    r = run_main(capsys, "proxy", "M0", "--proxy", "params", "--data", str(tmp_path / "gz"), "--img-size", "28", "--classes", "5")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: --classes asks for 5 classes; {tmp_path / 'gz'} has 3"]


def test_truncated_or_missing_files_are_one_line_errors(tmp_path, capsys):
    small_set(tmp_path / "t")
    blob = (tmp_path / "t" / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t" / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_data(DataConfig(str(tmp_path / "t"), img_size=28))
    small_set(tmp_path / "short", gz=False)  # uncompressed but cut: fewer bytes than the header says
    path = tmp_path / "short" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_data(DataConfig(str(tmp_path / "short"), img_size=28))
    small_set(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing: t10k-labels-idx1-ubyte"):
        load_data(DataConfig(str(tmp_path / "m"), img_size=28))
    r = run_main(capsys, "proxy", "M0", "--proxy", "params", "--data", str(tmp_path / "t"), "--img-size", "28")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "truncated or corrupt" in r.stderr


def test_short_training_on_fashion_mnist_learns_well_above_chance():
    from effvit_nas.proxy.short_training import ShortTrainSettings, train_proxy

    data = load_data(DataConfig("fashion-mnist", img_size=32, train_per_class=100, val_per_class=30))
    result = train_proxy(TINY.replace(img_size=32), data, ShortTrainSettings(steps=120, batch=64))
    assert result.top1 > 0.4, result  # chance is 0.1
