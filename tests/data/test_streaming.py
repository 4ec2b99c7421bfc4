"""Training data streamed from an ImageFolder on disk: the same selection, labels and evaluation
crop as the in-memory path, batches through the worker's real pipeline, bad layouts refused.
(The end-to-end run and its memory at 2k / 20k images: benchmarks/streaming_memory.py.)"""

import shutil

import pytest
import torch

from effvit_nas.data import DataConfig, DataError, load_data, normalize
from effvit_nas.data.streaming import FolderData
from effvit_nas.training.recipe import TrainRecipe
from tests.support import make_image_folder, run_main


@pytest.fixture
def folder(tmp_path):
    make_image_folder(tmp_path / "imgs", per=6)
    return tmp_path / "imgs"


def test_streaming_selects_what_the_in_memory_path_loads(folder):
    cfg = DataConfig(str(folder), img_size=32, num_classes=2, train_per_class=4, seed=3)
    streamed, memory = FolderData.scan(cfg), load_data(cfg)
    assert list(streamed.classes) == memory.classes == ["cat", "dog"]
    assert streamed.train_count == memory.train_count == 8 and streamed.val_count == len(memory.val_x) == 12
    val = streamed.split("val", streamed.eval_transform())
    x = torch.stack([val[i][0] for i in range(len(val))])
    assert [val[i][1] for i in range(len(val))] == memory.val_y.tolist()
    # the paper's evaluation crop either way; in memory the crop is stored as uint8 first
    torch.testing.assert_close(x, normalize(memory.val_x), rtol=0, atol=0.01)


def test_the_worker_trains_and_evaluates_from_disk(folder):
    from effvit_nas.training.loop import Worker

    w = Worker.__new__(Worker)  # the pieces of the Ray Train worker that read data
    w.recipe = TrainRecipe(batch=4, crop_pad=4, auto_augment="", reprob=0.0, color_jitter=0.0, repeated_aug=1).resolved(1)
    w.data, w.rank, w.world, w.loader_workers, w.device = (
        FolderData.scan(DataConfig(str(folder), img_size=32)),
        0,
        1,
        1,
        torch.device("cpu"),
    )
    # private: the loader a worker builds, without the Ray Train context a public run needs
    w._data_pipeline()
    x, y = next(iter(w.loader))
    assert x.shape == (4, 3, 32, 32) and w.steps == 18 // 4 and y.dtype == torch.int64
    always_emu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    always_emu(x)
    with torch.no_grad():
        always_emu[1].weight.zero_()
        always_emu[1].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    assert w.top1(always_emu) == pytest.approx(1 / 3)  # 6 of the 18 held-out images are emus


def test_bad_layouts_are_one_line(folder, tmp_path, capsys):
    (folder / "val" / "dog").rename(folder / "val" / "doe")
    with pytest.raises(DataError, match="class folders of val/ differ from train/"):
        FolderData.scan(DataConfig(str(folder), img_size=32))
    shutil.rmtree(folder / "val")
    with pytest.raises(DataError, match="val has no class folders"):
        FolderData.scan(DataConfig(str(folder), img_size=32))
    r = run_main(capsys, "train", "M0", "--data", "synthetic", "--img-size", "32", "--stream", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--stream reads an ImageFolder directory" in r.stderr and "Traceback" not in r.stderr
