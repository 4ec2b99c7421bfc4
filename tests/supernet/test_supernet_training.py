"""`supernet train` through Ray Train (sandwich rule, checkpoints, --resume), the
`supernet:DIR` proxy and `train --init-from` on its folder."""

import json

import numpy as np
import pytest

from tests.support import run_main

# 40 synthetic images at 64 px: 1 update per epoch, each through 4 subnets of `tiny`
DATA = ["--data", "synthetic", "--train-per-class", "4", "--val-per-class", "4"]
QUICK = ["--batch", "40", "--set", "auto_augment=", "--set", "repeated_aug=1", "--set", "reprob=0", "--set", "color_jitter=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, local_ray):
    """A supernet of `tiny` after 2 epochs (one Ray Train run: each costs ~15-20 s of the suite;
    `--resume` restores through the same code as `train --resume`, tested in tests/training)."""
    from effvit_nas.cli import main  # in this process, on the session's Ray (capsys is per test)

    out = tmp_path_factory.mktemp("supernet") / "sn"
    with pytest.raises(SystemExit) as e:
        main(["supernet", "train", "--space", "tiny", *DATA, *QUICK, "--epochs", "2", "--out", str(out), "--quiet"])
    assert e.value.code == 0
    return out


def test_supernet_training_writes_its_folder_and_keeps_it(trained, capsys):
    record = json.loads((trained / "supernet.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["settings"] == {"random_subnets": 2, "distill": True, "calibration_images": 512}
    assert record["recipe"]["mixup"] == 0 and record["recipe"]["ema_decay"] == 0
    assert 0 <= record["top1_largest"] <= 1 and 0 <= record["top1_smallest"] <= 1
    assert (trained / "supernet.safetensors").is_file() and (trained / "space.yaml").is_file()
    before = (trained / "supernet.safetensors").read_bytes()
    r = run_main(capsys, "supernet", "train", "--space", "tiny", *DATA, "--out", str(trained))  # no --resume: refused
    assert r.returncode == 2 and "--resume is needed to train into" in r.stderr
    assert (trained / "supernet.safetensors").read_bytes() == before


def test_the_supernet_proxy_scores_a_candidate_with_its_inherited_weights(trained):
    from effvit_nas.arch.space import load_space
    from effvit_nas.data import DataConfig, load_data
    from effvit_nas.proxy.registry import check_proxy, evaluate_proxy
    from effvit_nas.supernet.scoring import load_supernet, subnet_top1

    space = load_space("tiny")
    config = space.sample(np.random.default_rng(3))
    data = load_data(DataConfig("synthetic", 64, None, 8, 4, 0))
    name = check_proxy(f"supernet:{trained}", space)
    r = evaluate_proxy(name, config, data)
    net, digest = load_supernet(trained)
    assert r.kind == "accuracy" and r.details["weights_sha256"] == digest and r.details["supernet"] == str(trained)
    assert r.value == subnet_top1(net, config, data, 512, 0)  # the same extraction, recalibration and evaluation


def test_init_from_gives_a_training_worker_the_inherited_weights(trained):
    """What `train --init-from DIR` hands each Ray Train worker (the flag's plumbing into
    train.json was run by hand: a full Ray Train run costs a minute of the suite)."""
    import torch

    from effvit_nas.arch.space import load_space
    from effvit_nas.data import DataConfig, load_data
    from effvit_nas.supernet.scoring import load_supernet
    from effvit_nas.training.loop import Worker

    config = load_space("tiny").sample(np.random.default_rng(4))
    worker = Worker.__new__(Worker)  # only what build_net reads
    worker.data, worker.init_from = load_data(DataConfig("synthetic", 64, None, 2, 2, 0)), str(trained)
    got = worker.build_net(config).state_dict()
    inherited = load_supernet(trained)[0].extract(config).state_dict()
    assert got.keys() == inherited.keys() and all(torch.equal(got[k], inherited[k]) for k in got)
    worker.init_from = None  # the control: from scratch, the stage-2 attention differs
    key = "stages.2.blocks.0.mixer.m.attn.qkvs.0.conv.weight"
    assert not torch.equal(worker.build_net(config).state_dict()[key], inherited[key])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["supernet", "train", "--space", "tiny", "--set", "mixup=0.8"], "--set mixup must be 0 for supernet training"),
        (["supernet", "train", "--space", "tiny", "--img-size", "32"], "--img-size must be the space's largest resolution 64"),
        (["proxy", "M0", "--proxy", "supernet:/nonexistent"], "is not a trained supernet folder"),
        (["train", "M0", "--img-size", "64", "--init-from", "{trained}"], "is not a point of the space of the supernet"),
    ],
)
def test_supernet_bad_input(trained, capsys, args, needle):
    r = run_main(capsys, *(a.format(trained=trained) for a in args))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_a_search_refuses_a_supernet_of_another_space(trained, capsys, tmp_path):
    r = run_main(capsys, "search", "--space", "efficientvit64", "--proxy", f"supernet:{trained}", "--budget", "1000",
                 "--trials", "1", "--storage", f"sqlite:///{tmp_path}/s.db")  # fmt: skip
    assert r.returncode == 2 and "covers space 'tiny', not the search's space 'efficientvit64'" in r.stderr
    assert not (tmp_path / "s.db").exists() or "efficientvit64" not in (tmp_path / "s.db").read_bytes().decode(errors="ignore")


def test_a_fidelity_study_refuses_other_supernet_weights_and_reports_without_them(trained, capsys, tmp_path):
    """The weights (hundreds of MB for a real space) are needed to score, not to report; a
    study scored with other weights than its folder's now refuses to score more."""
    import os
    import shutil

    from safetensors.torch import load_file, save_file

    net = tmp_path / "sn"
    shutil.copytree(trained, net, ignore=shutil.ignore_patterns("checkpoints"))
    args = ["fidelity", "--space", "tiny", *DATA, "--reference-per-class", "8", "--reference-steps", "2", "--seeds", "1", "--archs", "3",
            "--batch", "8", "--threads", "1", "--storage", f"sqlite:///{tmp_path}/f.db", "--proxies", f"params,supernet:{net}"]  # fmt: skip
    r = run_main(capsys, *args, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["complete"] == 3 and all(len(a["proxies"]) == 2 for a in report["per_arch"])
    weights, path = load_file(net / "supernet.safetensors"), net / "supernet.safetensors"
    before = path.stat().st_mtime_ns
    save_file({k: v + 1 if k == next(iter(weights)) else v for k, v in weights.items()}, path)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # the loaded weights are cached by mtime and size
    r = run_main(capsys, *args, "--archs", "4")  # retrained in place: its new scores would not compare with the stored ones
    assert r.returncode == 2 and "scores were made with supernet weights" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_main(capsys, *args, "--archs", "4", "--report-only", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["archs"] == 3  # refused before a 4th was drawn
    (net / "supernet.safetensors").unlink()
    r = run_main(capsys, *args, "--report-only", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == report
    r = run_main(capsys, *args)  # scoring again would need them: the usual one-line error
    assert r.returncode == 2 and "is not a trained supernet folder" in r.stderr
