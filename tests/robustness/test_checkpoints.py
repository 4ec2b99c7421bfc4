"""Issue 45 item 3: a damaged checkpoint is one line naming it, before Ray Train starts."""

import pytest
import torch

from effvit_nas.model.efficientvit import build_model
from effvit_nas.training.loop import MODEL_FILE, STATE_FILE, save_weights
from effvit_nas.training.runner import CHECKPOINT_DIR, RUN_NAME
from tests.support import TINY, run_main

ARCH = TINY.replace(num_classes=4, img_size=32)
DATA = ["--data", "synthetic", "--classes", "4", "--img-size", "32", "--train-per-class", "8", "--val-per-class", "2", "--epochs", "2"]


def _checkpoint(out, arch=ARCH):
    """An epoch checkpoint as the training loop writes it (weights + plain-data state)."""
    folder = out / CHECKPOINT_DIR / RUN_NAME / "checkpoint_000000"
    folder.mkdir(parents=True)
    save_weights(build_model(arch), folder / MODEL_FILE)
    torch.save({"epoch": 1, "history": [], "num_classes": 4}, folder / STATE_FILE)
    return folder


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [STATE_FILE, MODEL_FILE, "shape"])
@pytest.mark.parametrize("resume", [True, False])
def test_damaged_checkpoints_are_refused_before_training(tmp_path, capsys, damage, resume):
    config = tmp_path / "tiny.yaml"
    config.write_text(ARCH.to_yaml())
    out = tmp_path / "o"
    if damage == "shape":  # another architecture's weights under this run's folder
        folder = _checkpoint(out, ARCH.replace(widths=(16, 32, 64)))
        bad = folder / MODEL_FILE
    else:
        folder = _checkpoint(out)
        bad = folder / damage
        _truncate(bad)
    before = sorted(p.name for p in out.rglob("*"))
    r = run_main(capsys, "train", str(config), "--out", str(out), *DATA, *(["--resume"] if resume else []))
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr
    assert str(bad) in r.stderr and f"delete {folder}" in r.stderr and "nothing to resume" not in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing removed from a folder that was there


def test_a_damaged_supernet_is_one_line(tmp_path, capsys):
    from effvit_nas.arch.space import load_space
    from effvit_nas.errors import UserError
    from effvit_nas.supernet.scoring import SPACE_FILE, WEIGHTS_FILE, load_supernet

    (tmp_path / SPACE_FILE).write_text(load_space("tiny").to_dict().__repr__().replace("'", '"'))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="is damaged"):
        load_supernet(tmp_path)
    r = run_main(capsys, "proxy", "M0", "--proxy", f"supernet:{tmp_path}", "--data", "synthetic", "--img-size", "64")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and WEIGHTS_FILE in r.stderr, r.stderr


def test_weights_and_state_say_damaged_in_one_wording(tmp_path):
    """read_weights and read_state share model.weights.damaged: one wording for a bad file."""
    from effvit_nas.errors import UserError
    from effvit_nas.model.weights import damaged, read_weights
    from effvit_nas.training.loop import read_state

    assert str(damaged(tmp_path / "f", EOFError(), "delete it")) == f"{tmp_path / 'f'} is damaged (EOFError): delete it"
    folder = _checkpoint(tmp_path / "o")
    for path, read in ((folder / STATE_FILE, read_state), (folder / MODEL_FILE, read_weights)):
        _truncate(path)
        with pytest.raises(UserError) as e:
            read(path, "delete it")
        assert str(e.value).startswith(f"{path} is damaged (") and str(e.value).endswith("): delete it")
