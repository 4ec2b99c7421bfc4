import os
import pickle
import re

import numpy as np
import pytest
import torch

from effvit_nas.data import DataConfig, DataError, load_data, normalize
from effvit_nas.errors import SettingError
from tests.support import make_image_folder, run_main


def test_synthetic_is_deterministic_and_balanced():
    cfg = DataConfig(img_size=32, num_classes=5, train_per_class=20, val_per_class=8, seed=3)
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert a.train_x.shape == (100, 3, 32, 32) and a.train_x.dtype == torch.uint8
    assert torch.bincount(a.train_y).tolist() == [20] * 5 and torch.bincount(a.val_y).tolist() == [8] * 5
    c = load_data(DataConfig(img_size=32, num_classes=5, train_per_class=20, val_per_class=8, seed=4))
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.float().std() > 20  # not a blank image set


@pytest.fixture(scope="module")
def synth10():
    """10 synthetic classes at 32 px, generated once for the tests that probe their separability."""
    return load_data(DataConfig(img_size=32, num_classes=10, train_per_class=50, val_per_class=20))


def _nearest_mean_accuracy(train_f, train_y, val_f, val_y) -> float:
    means = torch.stack([train_f[train_y == c].mean(0) for c in range(int(train_y.max()) + 1)])
    return (torch.cdist(val_f, means).argmin(1) == val_y).float().mean().item()


def test_synthetic_classes_are_not_trivially_separable(synth10):
    d = synth10
    # nearest class mean on raw pixels: far below what a trained network reaches
    acc = _nearest_mean_accuracy(normalize(d.train_x).flatten(1), d.train_y, normalize(d.val_x).flatten(1), d.val_y)
    assert acc < 0.5


def test_synthetic_classes_are_learnable(synth10):
    """The labels carry the images' content: a trivial classifier on features that fit how the
    classes are made beats chance (0.1) by far, and falls to chance once labels are shuffled."""
    d = synth10

    def spectrum(x):
        # Fourier magnitudes of the grey image: the class is the orientation and frequency of
        # two gratings in blobs at random places, and |FFT| keeps those but not the places
        return torch.fft.fft2(normalize(x).mean(1)).abs().flatten(1)

    train_f, val_f = spectrum(d.train_x), spectrum(d.val_x)
    # measured 0.86 (seed 0; 0.69-0.86 over seeds 0-4), shuffled labels 0.02-0.16
    acc = _nearest_mean_accuracy(train_f, d.train_y, val_f, d.val_y)
    assert acc > 0.5
    shuffled = d.train_y[torch.randperm(len(d.train_y), generator=torch.Generator().manual_seed(0))]
    control = _nearest_mean_accuracy(train_f, shuffled, val_f, d.val_y)
    assert control < 0.25


def test_image_folder(tmp_path):
    make_image_folder(tmp_path)
    d = load_data(DataConfig(str(tmp_path), img_size=32, train_per_class=3))
    assert d.classes == ["cat", "dog", "emu"] and d.train_x.shape == (9, 3, 32, 32) and d.val_x.shape == (12, 3, 32, 32)
    assert d.train_y.tolist().count(2) == 3
    two = load_data(DataConfig(str(tmp_path), img_size=32, num_classes=2))
    assert two.num_classes == 2 and set(two.val_y.tolist()) == {0, 1}


def test_cifar_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 20)]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}, f)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    d = load_data(DataConfig(str(tmp_path), img_size=32))
    assert len(d.train_y) == 60 and len(d.val_y) == 20 and d.classes[0] == "c0" and d.img_size == 32
    assert load_data(DataConfig(str(tmp_path), img_size=48)).train_x.shape[-1] == 48


def _write_cifar(root, batch: dict, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    """A CIFAR-10 folder whose every batch is ``batch``, pickled as CIFAR's are (a dict)."""
    root.mkdir(exist_ok=True)
    for name in ("data_batch_1", "test_batch"):
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_arrays_and_lists_load_under_every_protocol(tmp_path, protocol):
    """CIFAR's own files are protocol-2 dicts of a uint8 array and a list of ints; numpy code
    writes numpy integers in the list and, at protocol 5, arrays through a buffer."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (20, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 19)] + [np.int64(9)]
    _write_cifar(tmp_path, {"batch_label": "training batch 1 of 1", "data": data, "labels": labels, "filenames": ["a.png"] * 20}, protocol)
    d = load_data(DataConfig(str(tmp_path), img_size=32))
    assert d.classes[9] == "c9" and len(d.train_y) == 20
    assert sorted(d.train_x.reshape(20, -1).sum(1).tolist()) == sorted(data.astype(np.int64).sum(1).tolist())


class _Payload:
    """What a hostile batch file carries: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_cifar_batch_with_a_payload_is_refused_without_running_it(tmp_path, capsys, where):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    _write_cifar(root, {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]})
    (root / where).write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0], "label_names": _Payload(marker)}))
    r = run_main(capsys, "proxy", "M0", "--proxy", "naswot", "--data", str(root))
    assert not marker.exists()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "posix.system" in r.stderr and where in r.stderr


def test_bad_data(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(str(tmp_path / "nope")))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="unrecognised layout"):
        load_data(DataConfig(str(tmp_path / "flat")))
    root = tmp_path / "empty"
    make_image_folder(root)
    (root / "train" / "fox").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_data(DataConfig(str(root)))
    bad = tmp_path / "badcifar"
    bad.mkdir()
    (bad / "data_batch_1").write_bytes(b"not a pickle")
    (bad / "test_batch").write_bytes(b"no")
    with pytest.raises(DataError, match="not a CIFAR"):
        load_data(DataConfig(str(bad)))


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        (dict(img_size=8), "DataConfig.img_size"),
        (dict(num_classes=0), "DataConfig.num_classes"),
        (dict(num_classes=1), "DataConfig.num_classes"),
        (dict(num_classes=10_000), "DataConfig.num_classes"),
        (dict(train_per_class=0), "DataConfig.train_per_class"),
        (dict(source="/some/dir", val_per_class=0), "DataConfig.val_per_class"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, setting):
    """Checked when the config is made (not when data is loaded), named as the library knows them."""
    with pytest.raises(SettingError) as e:
        DataConfig(**kwargs)
    assert e.value.setting == setting and str(e.value).startswith(setting) and "--" not in str(e.value)


def test_missing_directory_names_no_flag(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_data(DataConfig(str(tmp_path / "nope")))
    assert "--" not in str(e.value)


def _corrupt(folder, count=None) -> int:
    """Overwrite ``count`` PNGs under ``folder`` (all by default) with bytes that are no image."""
    files = sorted(folder.rglob("*.png"))[:count]
    for f in files:
        f.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return len(files)


def test_image_folder_skips_corrupt_images_with_one_warning(tmp_path, caplog):
    make_image_folder(tmp_path)
    _corrupt(tmp_path / "train" / "dog", 2)
    with caplog.at_level("WARNING", logger="effvit_nas.data.image_folder"):
        d = load_data(DataConfig(str(tmp_path), img_size=32))
    assert d.train_y.tolist().count(1) == 2 and d.train_y.tolist().count(0) == 4 and len(d.val_y) == 12
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {tmp_path / 'train'}: skipped 2 of 12 images that do not decode (corrupt or not images)"
    ]


def test_image_folder_of_corrupt_images_is_refused(tmp_path):
    make_image_folder(tmp_path)
    count = _corrupt(tmp_path / "val")
    with pytest.raises(DataError, match=rf"{tmp_path / 'val'}: none of the {count} images read decodes"):
        load_data(DataConfig(str(tmp_path), img_size=32))


@pytest.mark.parametrize(
    "command",
    [
        ["proxy", "M0", "--proxy", "naswot"],
        ["search", "--budget", "100", "--device", "cpu", "--storage", "sqlite:///{tmp}/s.db", "--trials", "1"],
        ["train", "M0", "--epochs", "1", "--out", "{tmp}/train"],
        ["supernet", "train", "--space", "tiny", "--epochs", "1", "--out", "{tmp}/supernet"],
    ],
)
def test_corrupt_image_folder_is_one_error_line_in_every_command(tmp_path, capsys, command):
    root = tmp_path / "data"
    make_image_folder(root)
    _corrupt(root / "train")
    r = run_main(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in command), "--data", str(root))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    # all 12 images, or one per class where a command checks the data before it starts
    want = rf"error: {re.escape(str(root / 'train'))}: none of the (12|3) images read decodes \(corrupt or not images\)"
    assert len(lines) == 1 and re.fullmatch(want, lines[0]), r.stderr
