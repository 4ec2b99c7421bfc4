"""Full training through Ray Train: DDP on CPU, checkpoints, resume after a kill, results
written back to the export folder and the study, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support import TINY, TINY_SEARCH, run_main

# 64 training images: 4 updates per epoch at --batch 16 on 2 workers, a few seconds per run
DATA = ["--classes", "4", "--train-per-class", "16", "--val-per-class", "4", "--img-size", "32"]


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture
def tiny_yaml(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.replace(num_classes=4, img_size=32).to_yaml())
    return p


def _teacher(folder, classes: int):
    """A model folder as `train` leaves it (config.yaml, model.safetensors), untrained."""
    from safetensors.torch import save_file

    from effvit_nas.model.efficientvit import build_model

    folder.mkdir()
    cfg = TINY.replace(num_classes=classes, img_size=32)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    save_file({k: v.contiguous() for k, v in build_model(cfg).state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def _live_actors_of(driver_pid: int) -> dict[str, int]:
    """``class:id`` -> process id of the actors still alive that the Ray job of ``driver_pid``
    created and that die with it (read from the GCS tables: Ray's state API needs the dashboard,
    which effvit-nas leaves off). Detached ones (Ray Train's state bookkeeping) outlive any job
    by design and write no checkpoint."""
    from ray._private import state

    jobs = {j["JobID"] for j in state.jobs() if j["DriverPid"] == driver_pid}
    return {
        f"{info['ActorClassName']}:{a}": info["Pid"]
        for a, info in state.actors().items()
        if info["JobID"] in jobs and info["State"] != "DEAD" and not info["IsDetached"]
    }


def _parses(path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _kill_after_first_checkpoint(p: subprocess.Popen, out, timeout: float = 240) -> int:
    """SIGKILL the training process ``p`` and its Ray Train controller and workers once Ray Train
    has committed its first epoch checkpoint, and wait until the cluster has them dead; the epoch
    of the newest checkpoint in ``out`` then.

    The run joined this session's Ray, so its actors are not in its process group: killed with
    the driver alone they would live on until Ray notices the driver's death, and could commit
    another epoch while the resumed run reads the same folder (the race this test once lost)."""
    from effvit_nas.training.runner import latest_checkpoint

    # Ray Train writes this file after a checkpoint is fully persisted and registered; a
    # resumed run restores the newest checkpoint it lists. It exists before it is written:
    # killed in between, the list is empty (the resume test covers that case apart)
    committed = out / "checkpoints" / "train" / "checkpoint_manager_snapshot.json"
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and not _parses(committed):
        time.sleep(0.02)
    assert p.poll() is None, p.stderr.read().decode()[-2000:]
    actors = _live_actors_of(p.pid)
    assert actors, "the run's Ray Train actors were not found"
    for pid in actors.values():
        if pid > 0:  # 0: not started yet (and os.kill(0, ...) would signal this test's own group)
            os.kill(pid, signal.SIGKILL)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    while _live_actors_of(p.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _live_actors_of(p.pid), "the killed run's actors are still alive"
    from effvit_nas.training.loop import load_state

    return load_state(latest_checkpoint(out) / "state.pt")["epoch"]


def test_two_workers_resume_after_kill_reaches_the_uninterrupted_weights(tmp_path, tiny_yaml, local_ray, capsys):
    """Two DDP workers (gloo), distilling from a teacher: a run SIGKILLed after its first epoch
    checkpoint and resumed ends with exactly the weights (and EMA) of an uninterrupted run."""
    from effvit_nas.training.loop import STATE_FILE, load_state
    from effvit_nas.training.runner import latest_checkpoint

    teacher = _teacher(tmp_path / "teacher", 4)
    args = ["train", str(tiny_yaml), *DATA, "--epochs", "2", "--batch", "16", "--workers", "2", "--distill", str(teacher)]
    killed = tmp_path / "killed"
    # the killed process joins this session's Ray, so no second Ray starts
    address = local_ray.get_runtime_context().gcs_address
    p = subprocess.Popen(
        [sys.executable, "-m", "effvit_nas.cli", *args, "--out", str(killed), "--quiet", "--ray-address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert _kill_after_first_checkpoint(p, killed) < 1  # it died with an epoch left to run (epochs count from 0)
    assert not (killed / "train.json").exists()
    # the same kill landing while Ray Train rewrote its list of checkpoints: the list is empty
    cut = tmp_path / "cut"
    shutil.copytree(killed, cut)
    listed = cut / "checkpoints" / "train" / "checkpoint_manager_snapshot.json"
    listed.write_text("")
    first = load_state(latest_checkpoint(killed) / STATE_FILE)["history"][0]  # with its own train_s

    for out in (killed, cut):
        r = run_main(capsys, *args, "--out", str(out), "--resume", "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        resumed = json.loads(r.stdout[r.stdout.index("{") :])
        assert resumed["epochs"] == 2 and len(resumed["history"]) == 2
        assert resumed["history"][0] == first  # epoch 0 restored, not trained again
        assert all(1 <= h["threads"] <= os.cpu_count() for h in resumed["history"])  # what each epoch ran with
    assert listed.with_name(listed.name + ".unreadable").read_text() == ""  # set aside, not deleted

    whole = tmp_path / "whole"
    r = run_main(capsys, *args, "--out", str(whole), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("model.safetensors", "model_ema.safetensors"):
        for out in (killed, cut):
            a, b = _weights(out / name), _weights(whole / name)
            assert a.keys() == b.keys()
            assert all((a[k] == b[k]).all() for k in a), f"{out.name}: resumed {name} differs from the uninterrupted run"
    record = json.loads((whole / "train.json").read_text())
    assert record["workers"] == 2 and record["recipe"]["batch"] == 16 and 0 <= record["top1"] <= 1
    assert record["recipe"]["auto_augment"].startswith("rand-m9-mstd0.5-inc1") and record["recipe"]["mixup"] == 0.8
    assert record["teacher"]["weights"] == str((teacher / "model.safetensors").resolve()) and record["recipe"]["distill_alpha"] == 0.5

    # training again into a finished run needs --resume; resuming with other data is refused
    r = run_main(capsys, *args, "--out", str(whole))
    assert r.returncode == 2 and "--resume is needed" in r.stderr
    r = run_main(
        capsys, "train", str(tiny_yaml), "--classes", "3", "--train-per-class", "24", "--img-size", "32", "--out", str(whole), "--resume"
    )
    assert r.returncode == 2 and "has 4 classes, the data 3" in r.stderr


def _small_search(url: str) -> list[str]:
    """`search` resuming the finished small study (it runs no trial)."""
    return ["search", "--study", "small", "--storage", url, "--budget", "0.3xM0", "--trials", "8", "--sampler", "random", *TINY_SEARCH]


def test_search_train_top_writes_back_to_export_and_study(small_study, tmp_path, capsys):
    """`search --train-top 1` on a finished study: the best Pareto model is exported, trained,
    and its trained top-1 lands in the export folder, its model card and the study."""
    import shutil

    src = small_study[0].removeprefix("sqlite:///")
    shutil.copy(src, tmp_path / "s.db")
    url = f"sqlite:///{tmp_path}/s.db"
    out = tmp_path / "models"
    train = ["--train-top", "1", "--train-epochs", "1", "--train-batch", "16", "--train-out", str(out)]
    r = run_main(capsys, *_small_search(url), *train, "--json")
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


def test_an_interrupted_search_trains_nothing(monkeypatch, tmp_path, capsys):
    """Ctrl-C during the search stops the command: --train-top does not go on to train."""
    from effvit_nas.search.loop import SearchSummary

    def interrupted(problem, options, on_event=None):
        return SearchSummary("s", options.storage, 1, 0, 1, [], 0, 0, 0, 1.0, interrupted=True)

    def no_training(*a, **kw):
        raise AssertionError("trained after an interrupted search")

    monkeypatch.setattr("effvit_nas.search.loop.run_search", interrupted)
    monkeypatch.setattr("effvit_nas.cli.search.compare_with_baseline", no_training)
    monkeypatch.setattr("effvit_nas.cli.search.train_best", no_training)
    url = f"sqlite:///{tmp_path}/s.db"
    for extra in (["--train-top", "1"], ["--train-top", "1", "--baseline", "M0"]):
        r = run_main(
            capsys, "search", "--study", "s", "--storage", url, "--budget", "100", "--trials", "2", *TINY_SEARCH, "--no-anchor", *extra
        )
        assert r.returncode == 130 and "--train-top skipped" in r.stderr, r.stderr  # the status says it was cut short
        assert r.stdout.startswith("interrupted:") or "\ninterrupted:" in r.stdout


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--data", "/no/such/dir"], "does not exist"),
        (["--data", "{empty}"], "unrecognised layout"),
        (["--distill", "/no/teacher"], "unknown teacher"),
        (["--set", "warp=9"], "--set 'warp=9': expected KEY=VALUE"),
        (["--set", "mixup=lots"], "--set mixup must be a number, got 'lots'"),
        (["--set", "amp=maybe"], "--set amp must be true or false"),
        (["--set", "crop_pad=-1"], "--set crop_pad must be >= 0 px"),
        (["--set", "scale_min=0"], "--set scale_min must be in (0, 1]"),
        (["--set", "epochs=0"], "--set epochs must be positive"),
        (["--set", "mixup=-1"], "--set mixup must be >= 0"),
        (["--set", "base_lr=nan"], "--set base_lr must be positive"),
        (["--set", "ema_decay=7"], "--set ema_decay must be in [0, 1)"),
        (["--set", "smoothing=3"], "--set smoothing must be in [0, 1)"),
        (["--set", "repeated_aug=0"], "--set repeated_aug is repeats per image"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--classes", "2", "--train-per-class", "4", "--batch", "16"], "--batch 16 is more than 8 training images"),
        (["--resume"], "nothing to resume"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_train_bad_input(tmp_path, tiny_yaml, capsys, extra, needle):
    (tmp_path / "empty").mkdir()
    extra = [e.replace("{empty}", str(tmp_path / "empty")) for e in extra]
    r = run_main(capsys, "train", str(tiny_yaml), "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "o").exists()  # refused before training: no empty --out folder left behind


def test_library_errors_name_the_setting_and_the_cli_its_flag(tmp_path, tiny_yaml, local_ray, capsys):
    """The library says which setting is wrong (no CLI flag in its message); `train` says
    which of its flags set it."""
    from effvit_nas.data import DataConfig
    from effvit_nas.errors import SettingError
    from effvit_nas.training.recipe import TrainRecipe, parse_overrides
    from effvit_nas.training.runner import TrainExecution, train

    cases = [
        (lambda: TrainRecipe(epochs=0), "TrainRecipe.epochs"),
        (lambda: TrainRecipe(lr=-1.0), "TrainRecipe.lr"),
        (lambda: parse_overrides(["mixup=lots"]), "TrainRecipe.mixup"),
        (lambda: parse_overrides(["warp=9"]), "parse_overrides.pairs"),
        (lambda: TrainExecution(workers=0), "TrainExecution.workers"),
    ]
    cpus = int(local_ray.cluster_resources()["CPU"])
    n = cpus + 1  # one worker more than Ray has CPUs
    data = DataConfig(img_size=32, num_classes=4, train_per_class=16, val_per_class=4)
    run = TrainExecution(out=tmp_path / "lib", workers=n)
    cases.append((lambda: train(TINY.replace(img_size=32), data, TrainRecipe(epochs=1, batch=2 * n), run), "TrainExecution.workers"))
    for make, setting in cases:
        with pytest.raises(SettingError) as e:
            make()
        assert e.value.setting == setting and str(e.value).startswith(setting) and "--" not in str(e.value)

    r = run_main(capsys, "train", str(tiny_yaml), *DATA, "--batch", str(2 * n), "--workers", str(n), "--out", str(tmp_path / "cli"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --workers {n} needs {n} CPUs; Ray has {cpus}"
    assert "note: synthetic data: crop_pad=4" in r.stdout  # the CLI says what the data changed


def test_threads_fixes_the_torch_threads_within_rays_cpus(tmp_path, tiny_yaml, local_ray, capsys, monkeypatch):
    """--threads wins over the load-based default (CPU runs repeat only at one thread count)
    but not over the CPUs Ray can reserve for the worker."""
    from effvit_nas.errors import SettingError
    from effvit_nas.training.runner import _threads

    cpus = int(local_ray.cluster_resources()["CPU"])
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))  # every CPU busy
    assert _threads(local_ray, 1, False) == 1
    assert _threads(local_ray, 1, False, cpus) == cpus
    with pytest.raises(SettingError) as e:
        _threads(local_ray, 1, False, cpus + 1)
    assert e.value.setting == "TrainExecution.threads"
    r = run_main(capsys, "train", str(tiny_yaml), *DATA, "--batch", "8", "--threads", str(cpus + 1), "--out", str(tmp_path / "cli"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --threads {cpus + 1} x 1 worker(s) is more than the {cpus} CPUs Ray has"
    r = run_main(capsys, "supernet", "train", "--space", "tiny", "--threads", "0", "--out", str(tmp_path / "sn"))
    assert r.returncode == 2 and "--threads" in r.stderr and "Traceback" not in r.stderr


def test_a_checkpoint_carrying_code_is_refused_and_not_run(tmp_path, tiny_yaml, capsys):
    """state.pt is loaded with weights_only=True: a pickle that would run a command is
    refused with one line, and the command never runs."""
    import shlex

    import torch

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {shlex.quote(str(marker))}",)

    checkpoint = tmp_path / "o" / "checkpoints" / "train" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    torch.save({"epoch": 0, "history": [], "num_classes": 4, "optimizer": Payload()}, checkpoint / "state.pt")
    (checkpoint / "model.safetensors").write_bytes(b"")
    r = run_main(capsys, "train", str(tiny_yaml), *DATA, "--out", str(tmp_path / "o"), "--resume")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to load ") and "state.pt" in lines[0], r.stderr
    assert "posix.system" in lines[0] and "Traceback" not in r.stderr
    assert not marker.exists()
    torch.load(checkpoint / "state.pt", weights_only=False)  # the payload is live: unrestricted loading runs it
    assert marker.exists()


def test_crop_pad_shifts_the_image_without_rescaling_it():
    """crop_pad=N replaces the random-resized crop by a crop of the N-px reflect-padded image:
    every output is the input shifted by at most N px (scale, hence grating frequency, kept)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from effvit_nas.data import normalize
    from effvit_nas.training.loop import train_transform
    from effvit_nas.training.recipe import TrainRecipe

    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    tf = train_transform(TrainRecipe(crop_pad=4, hflip=0, auto_augment="", color_jitter=0, reprob=0), 32)
    padded = F.pad(normalize(x[None]), (4, 4, 4, 4), mode="reflect")[0]
    shifts = set()
    for _ in range(20):
        out = tf(Image.fromarray(x.permute(1, 2, 0).numpy()))
        match = [(dy, dx) for dy in range(9) for dx in range(9) if torch.allclose(out, padded[:, dy : dy + 32, dx : dx + 32], atol=1e-5)]
        assert len(match) >= 1, "output is not a shifted copy of the input"
        shifts.add(match[0])
    assert len(shifts) > 1  # it does move


def test_synthetic_data_gets_the_padded_crop_unless_set():
    """Synthetic data defaults to crop_pad=4 and says so; an override wins (and nothing is
    said); other data keeps the paper's random-resized crop."""
    from effvit_nas.data import DataConfig
    from effvit_nas.training.recipe import parse_overrides, recipe_for

    synthetic, folder = DataConfig("synthetic"), DataConfig("/data/imagenet")
    recipe, note = recipe_for(synthetic, {"epochs": 2})
    assert recipe.crop_pad == 4 and note.startswith("synthetic data: crop_pad=4")
    recipe, note = recipe_for(synthetic, {"epochs": 2}, parse_overrides(["crop_pad=0"]))
    assert recipe.crop_pad == 0 and note == ""
    recipe, note = recipe_for(folder, {"epochs": 2})
    assert recipe.crop_pad == 0 and recipe.scale_min == 0.08 and note == ""
    assert parse_overrides(["ema-decay=0.9", "amp=no", "warmup_epochs=1", "lr=1e-3"]) == {
        "ema_decay": 0.9,
        "amp": False,
        "warmup_epochs": 1,
        "lr": 1e-3,
    }


def test_distillation_loss_is_deits_soft_distillation():
    """With a teacher the loss is (1 - alpha) CE(student, labels) + alpha tau^2
    KL(softmax(teacher / tau) || softmax(student / tau)), KL summed over classes and averaged
    over the batch (DeiT's soft distillation, the paper's formula); without one, the CE alone."""
    import types

    import torch
    import torch.nn.functional as F

    from effvit_nas.training.loop import Worker
    from effvit_nas.training.recipe import TrainRecipe

    alpha, tau = 0.3, 2.0  # alpha != 1/2 and tau != 1: a swapped weight or a lost tau^2 shows
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g), 3 * torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    w = Worker.__new__(Worker)  # only what loss() reads: no Ray, no data, no model
    w.recipe = TrainRecipe(mixup=0, cutmix=0, smoothing=0, distill_alpha=alpha, distill_tau=tau)
    w.data, w.device, w.amp = types.SimpleNamespace(num_classes=5), torch.device("cpu"), False
    # private: the worker's own loss pieces, without the Ray Train context a public run needs
    w._losses(None)  # the worker's own target mixing (none here) and soft-target CE
    w.teacher = lambda x: teacher  # fixed logits, whatever the batch
    x = torch.zeros(6, 3, 8, 8)

    def net(x):
        return student

    ce = F.cross_entropy(student, y)
    p_t = F.softmax(teacher / tau, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / tau, 1))).sum(1).mean()
    expected = (1 - alpha) * ce + alpha * tau**2 * kl
    assert not torch.isclose(expected, ce)  # the teacher's term is not negligible here
    got = w.loss(net, x, y)
    assert torch.isclose(got, expected), (got, expected)
    w.teacher = None
    got = w.loss(net, x, y)
    assert torch.isclose(got, ce), (got, ce)


def test_a_teacher_with_other_classes_is_refused_before_training(tmp_path, tiny_yaml, capsys):
    """--distill checks the teacher's class count against the data before any Ray Train run
    (distilling itself is part of the resume test above)."""
    wrong = _teacher(tmp_path / "t7", 7)
    r = run_main(
        capsys, "train", str(tiny_yaml), *DATA, "--epochs", "1", "--batch", "16", "--distill", str(wrong), "--out", str(tmp_path / "w")
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: teacher has 7 classes, the data 4"], r.stderr
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_search_baseline_trains_found_and_preset_alike_and_tables_them(small_study, tmp_path, capsys, monkeypatch):
    """`search --train-top 1 --baseline M0 --train-seeds 2` on a finished study: the best Pareto
    model and M0 (at the space's 64 px, 10 classes) are trained with the same recipe and seeds,
    re-measured interleaved (real measurements), judged, and the table lands in the study
    (`show`) and the model cards; a second run reuses every trained seed. Training itself is
    a stand-in that writes what `train` writes: four real Ray Train runs cost minutes, and
    `train` has its own end-to-end tests above."""
    import shutil

    from effvit_nas.training.runner import TrainResult

    calls = []

    def fake_train(arch, data, recipe, run, teacher=None, on_progress=None):
        assert (data.train_per_class, data.val_per_class, recipe.mixup, recipe.repeated_aug) == (7, None, 0.0, 1)  # the flags below
        calls.append((arch.short_hash(), recipe.seed, recipe.epochs, data.img_size))
        top1 = 0.5 + 0.01 * recipe.seed + (0.1 if arch.widths == (64, 128, 192) else 0.0)  # M0 better by 10 points
        run.out.mkdir(parents=True)
        (run.out / "train.json").write_text(json.dumps({"top1": top1}))
        return TrainResult(top1, None, recipe.epochs, 0.0, 0.0, str(run.out), [])

    monkeypatch.setattr("effvit_nas.training.comparison.train", fake_train)

    shutil.copy(small_study[0].removeprefix("sqlite:///"), tmp_path / "s.db")
    url, out = f"sqlite:///{tmp_path}/s.db", tmp_path / "models"
    args = _small_search(url)
    train = [
        "--train-top",
        "1",
        "--baseline",
        "M0",
        "--train-seeds",
        "2",
        "--train-epochs",
        "1",
        "--train-batch",
        "16",
        "--train-out",
        str(out),
        "--train-set",
        "mixup=0",
        "--train-set",
        "repeated_aug=1",
        "--train-top-per-class",
        "7",
    ]
    r = run_main(capsys, *args, *train, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(r.stdout[r.stdout.index("{") :])["extra"]["comparison"]
    found, base = rows
    assert base["name"] == "M0" and base["config"]["img_size"] == 64 and base["config"]["widths"] == [64, 128, 192]
    for row in rows:
        assert sorted(row["top1"]) == ["0", "1"] and all(0 <= v <= 1 for v in row["top1"].values())
        assert len(row["throughput"]) == 5 and row["throughput_median"] > 0
        for seed in (0, 1):
            assert json.loads((tmp_path / row["folder"] / f"seed-{seed}" / "train.json").read_text())["top1"] == row["top1"][str(seed)]
    assert calls == [(row["config_hash"], s, 1, 64) for s in (0, 1) for row in (base, found)]  # seed-major, baseline first
    assert base["top1_mean"] == pytest.approx(0.605) and base["top1_std"] == pytest.approx(0.00707, abs=1e-4)
    assert found["dominates"] is False and base["dominates"] is None  # 10 points below M0: never dominates
    assert "## Compared with the baseline" in (tmp_path / found["folder"] / "README.md").read_text()
    shown = run_main(capsys, "show", "--study", "small", "--storage", url).stdout
    assert "compared with M0" in shown and "dominates baseline" in shown
    png = tmp_path / "p.png"
    view = json.loads(run_main(capsys, "pareto", "--study", "small", "--storage", url, "--out", str(png), "--json").stdout)
    trained = {p["name"]: p for p in view["trained"]}  # drawn on the plot's second axis
    assert trained["M0"]["baseline"] and not trained[found["name"]]["baseline"]
    assert trained["M0"]["top1"] == pytest.approx(0.605) and trained["M0"]["throughput"] == base["throughput_median"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_comparison_reuses_every_seed_already_trained(tmp_path, monkeypatch):
    """A (model, seed) whose train.json exists is read, not trained again."""
    # private: one seed of one contender; the public compare() would also measure throughput
    from effvit_nas.training.comparison import Contender, _train_seed

    def no_training(*a, **kw):
        raise AssertionError("a trained seed was trained again")

    monkeypatch.setattr("effvit_nas.training.comparison.train", no_training)
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "train.json").write_text(json.dumps({"top1": 0.42}))
    c = Contender("M0", None, "h", TINY.to_dict(), str(tmp_path), 1, 1)
    _train_seed(c, None, None, None, 0, None)
    assert c.top1 == {0: 0.42}


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--baseline", "M0"], "--baseline needs --train-top"),
        (["--train-top", "1", "--baseline", "M9"], "--baseline: 'M9' is no preset"),
        (["--train-top", "1", "--train-set", "mixups=0"], "--train-set 'mixups=0': expected KEY=VALUE"),
        (["--train-top", "1", "--train-set", "mixup=lots"], "--train-set mixup must be a number"),
    ],
)
def test_bad_training_flags_fail_before_the_search(small_study, tmp_path, capsys, extra, needle):
    """Caught before any trial runs (not after an hour of search); the stored study is untouched."""
    import optuna

    url, name = small_study
    before = len(optuna.load_study(study_name=name, storage=url).trials)
    args = ["search", "--study", name, "--storage", url, "--budget", "0.3xM0", "--trials", str(before + 8), *TINY_SEARCH]
    r = run_main(capsys, *args, *extra)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert len(optuna.load_study(study_name=name, storage=url).trials) == before
