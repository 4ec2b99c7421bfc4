"""Full training through Ray Train: DDP on CPU, checkpoints, resume after a kill, results
written back to the export folder and the study, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import TINY, run_main

DATA = ["--classes", "4", "--train-per-class", "96", "--val-per-class", "8", "--img-size", "32"]


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture
def tiny_yaml(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.replace(num_classes=4, img_size=32).to_yaml())
    return p


def test_two_workers_resume_after_kill_reaches_the_uninterrupted_weights(tmp_path, tiny_yaml, local_ray, capsys):
    """Two DDP workers (gloo): a run SIGKILLed after its first epoch checkpoint and resumed
    ends with exactly the weights of an uninterrupted run."""
    args = ["train", str(tiny_yaml), *DATA, "--epochs", "3", "--batch", "16", "--workers", "2"]
    killed = tmp_path / "killed"
    p = subprocess.Popen(
        [sys.executable, "-m", "effvit_nas.cli", *args, "--out", str(killed), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if list((killed / "checkpoints").rglob("checkpoint_*/state.pt")):
            break
        time.sleep(0.05)
    assert p.poll() is None, p.stderr.read().decode()[-2000:]
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (killed / "train.json").exists()  # it really died mid-run

    r = run_main(capsys, *args, "--out", str(killed), "--resume", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads(r.stdout[r.stdout.index("{") :])
    assert resumed["epochs"] == 3 and len(resumed["history"]) == 3

    whole = tmp_path / "whole"
    r = run_main(capsys, *args, "--out", str(whole), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(killed / "model.safetensors"), _weights(whole / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run"
    assert all(
        (x == y).all()
        for x, y in zip(_weights(killed / "model_ema.safetensors").values(), _weights(whole / "model_ema.safetensors").values())
    )
    record = json.loads((whole / "train.json").read_text())
    assert record["workers"] == 2 and record["recipe"]["batch"] == 16 and 0 <= record["top1"] <= 1
    assert record["recipe"]["auto_augment"].startswith("rand-m9-mstd0.5-inc1") and record["recipe"]["mixup"] == 0.8

    # training again into a finished run needs --resume; resuming with other data is refused
    r = run_main(capsys, *args, "--out", str(whole))
    assert r.returncode == 2 and "--resume" in r.stderr
    r = run_main(
        capsys, "train", str(tiny_yaml), "--classes", "3", "--train-per-class", "24", "--img-size", "32", "--out", str(whole), "--resume"
    )
    assert r.returncode == 2 and "has 4 classes, the data 3" in r.stderr


def test_search_train_top_writes_back_to_export_and_study(small_study, tmp_path, capsys):
    """`search --train-top 1` on a finished study: the best Pareto model is exported, trained,
    and its trained top-1 lands in the export folder, its model card and the study."""
    import shutil

    src = small_study[0].removeprefix("sqlite:///")
    shutil.copy(src, tmp_path / "s.db")
    url = f"sqlite:///{tmp_path}/s.db"
    out = tmp_path / "models"
    r = run_main(
        capsys,
        "search",
        "--study",
        "small",
        "--storage",
        url,
        "--space",
        "tiny",
        "--device",
        "cpu",
        "--budget",
        "2000",
        "--trials",
        "8",
        "--sampler",
        "random",
        "--img-size",
        "32",
        "--classes",
        "4",
        "--train-per-class",
        "16",
        "--val-per-class",
        "8",
        "--warmup",
        "0.1",
        "--duration",
        "0.3",
        "--heartbeat",
        "1",
        "--train-top",
        "1",
        "--train-epochs",
        "1",
        "--train-batch",
        "16",
        "--train-out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads(r.stdout[r.stdout.index("{") :])["extra"]["trained"]
    assert len(trained) == 1
    folder = out / f"trial-{trained[0]['trial']}-{trained[0]['hash']}"
    assert (folder / "model.safetensors").exists() and (folder / "config.yaml").exists()
    assert json.loads((folder / "train.json").read_text())["top1"] == trained[0]["top1"]
    assert "## Trained" in (folder / "README.md").read_text()
    rows = json.loads(run_main(capsys, "show", "--study", "small", "--storage", url, "--json").stdout)
    row = next(x for x in rows if x["number"] == trained[0]["trial"])
    assert row["trained_top1"] == trained[0]["top1"] and row["accuracy"] is not None


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--data", "/no/such/dir"], "does not exist"),
        (["--data", "{empty}"], "unrecognised layout"),
        (["--distill", "/no/teacher"], "unknown teacher"),
        (["--set", "warp=9"], "expected KEY=VALUE"),
        (["--set", "mixup=lots"], "not a valid"),
        (["--set", "crop_pad=-1"], "crop_pad"),
        (["--set", "scale_min=0"], "scale_min"),
        (["--epochs", "0"], "--epochs"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_train_bad_input(tmp_path, tiny_yaml, capsys, extra, needle):
    (tmp_path / "empty").mkdir()
    extra = [e.replace("{empty}", str(tmp_path / "empty")) for e in extra]
    r = run_main(capsys, "train", str(tiny_yaml), "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_crop_pad_shifts_the_image_without_rescaling_it():
    """crop_pad=N replaces the random-resized crop by a crop of the N-px reflect-padded image:
    every output is the input shifted by at most N px (scale, hence grating frequency, kept)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from effvit_nas.proxy.data import normalize
    from effvit_nas.train.runner import TrainRecipe, _train_transform

    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    tf = _train_transform(TrainRecipe(crop_pad=4, hflip=0, auto_augment="", color_jitter=0, reprob=0), 32)
    padded = F.pad(normalize(x[None]), (4, 4, 4, 4), mode="reflect")[0]
    shifts = set()
    for _ in range(20):
        out = tf(Image.fromarray(x.permute(1, 2, 0).numpy()))
        match = [(dy, dx) for dy in range(9) for dx in range(9) if torch.allclose(out, padded[:, dy : dy + 32, dx : dx + 32], atol=1e-5)]
        assert len(match) >= 1, "output is not a shifted copy of the input"
        shifts.add(match[0])
    assert len(shifts) > 1  # it does move


def test_synthetic_data_gets_the_padded_crop_unless_set(capsys):
    """--data synthetic defaults to crop_pad=4 and says so; --set wins; other data keeps the
    paper's random-resized crop."""
    from effvit_nas.cli import _recipe_for
    from effvit_nas.proxy.data import DataConfig

    synthetic, folder = DataConfig("synthetic"), DataConfig("/data/imagenet")
    assert _recipe_for(synthetic, {"epochs": 2}, (), 1, quiet=False).crop_pad == 4
    assert "note: synthetic data: crop_pad=4" in capsys.readouterr().out
    assert _recipe_for(synthetic, {"epochs": 2}, ("crop_pad=0",), 1, quiet=False).crop_pad == 0
    assert capsys.readouterr().out == ""
    recipe = _recipe_for(folder, {"epochs": 2}, (), 1, quiet=False)
    assert recipe.crop_pad == 0 and recipe.scale_min == 0.08


def test_distill_from_a_model_folder(tmp_path, tiny_yaml, capsys):
    """--distill TEACHER trains with the teacher's soft targets (recorded in train.json); a
    teacher with another class count is refused before any training."""
    from safetensors.torch import save_file

    from effvit_nas.model.efficientvit import build_model

    def teacher(name, classes):
        folder = tmp_path / name
        folder.mkdir()
        cfg = TINY.replace(num_classes=classes, img_size=32)
        (folder / "config.yaml").write_text(cfg.to_yaml())
        save_file({k: v.contiguous() for k, v in build_model(cfg).state_dict().items()}, str(folder / "model.safetensors"))
        return folder

    good, wrong = teacher("t4", 4), teacher("t7", 7)
    args = ["train", str(tiny_yaml), *DATA, "--epochs", "1", "--batch", "16", "--set", "distill_alpha=1"]
    r = run_main(capsys, *args, "--distill", str(good), "--out", str(tmp_path / "s"), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((tmp_path / "s" / "train.json").read_text())
    assert record["teacher"]["weights"] == str((good / "model.safetensors").resolve()) and record["recipe"]["distill_alpha"] == 1
    r = run_main(capsys, *args, "--distill", str(wrong), "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "teacher has 7 classes, the data 4" in r.stderr.strip().splitlines()[-1]
