import json
import subprocess
import sys
from pathlib import Path

import pytest

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import load_space
from tests.support import run_cli, run_main


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "effvit-nas"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "space" in r.stdout and "model" in r.stdout


def test_space_show_lists_knobs_size_and_presets(capsys):
    r = run_main(capsys, "space", "show")
    assert r.returncode == 0, r.stderr
    for word in ("heads", "head_dim", "qk_dim", "v_ratio", "ffn_ratio", "window", "kernels", "size:"):
        assert word in r.stdout
    assert "presets inside: M0, M1, M2, M3, M4, M5" in r.stdout
    j = json.loads(run_main(capsys, "space", "show", "--json").stdout)
    assert j["size"] == load_space().size() and all(j["presets"].values())


def test_space_sample_json_is_valid_and_seeded(capsys):
    r = run_main(capsys, "space", "sample", "-n", "3", "--seed", "11", "--json", "--space", "tiny")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert len(records) == 3
    for rec in records:
        cfg = ArchConfig.from_dict(rec["config"])
        assert cfg.short_hash() == rec["hash"] and rec["params"] > 0 and rec["macs"] > 0
        assert load_space("tiny").contains(cfg)
    again = json.loads(run_main(capsys, "space", "sample", "-n", "3", "--seed", "11", "--json", "--space", "tiny").stdout)
    assert [r["hash"] for r in again] == [r["hash"] for r in records]


def test_model_info_json(tmp_path, capsys):
    r = run_main(capsys, "model", "info", "M0", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["params"] == 2_349_436 and abs(j["macs"] / 79.2e6 - 1) < 0.01
    assert j["img_size"] == 224 and j["hash"] == PRESETS["M0"].short_hash() and j["preset"] == "M0"
    assert ArchConfig.from_dict(j["config"]) == PRESETS["M0"]
    p = tmp_path / "m.yaml"
    p.write_text(PRESETS["M3"].replace(v_ratios=(1.0, 0.5, 1.0)).to_yaml())
    j = json.loads(run_main(capsys, "model", "info", str(p), "--img-size", "160", "--json").stdout)
    assert j["img_size"] == 160 and j["timm_kwargs"] is None and j["preset"] is None


def test_text_outputs(capsys):
    assert "f45070c844ec (preset M0)" in run_main(capsys, "model", "info", "m0").stdout
    out = run_main(capsys, "model", "list").stdout
    assert "12,473,772" in out and "M5" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["model", "info", "M9"], "neither a preset"),
        (["model", "info", "{file}"], "widths[0]"),
        (["model", "info", "{bad_yaml}"], "cannot parse"),
        (["model", "info", "{unknown_key}"], "unknown config key 'depth'"),
        (["model", "info", "nope.yaml"], "does not exist"),
        (["model", "info", "M0", "--img-size", "4"], "--img-size"),
        (["model", "info", "M0", "--img-size", "100000"], "--img-size"),  # not an out-of-memory traceback
        (["space", "show", "--space", "nope"], "bundled space"),
        (["space", "sample", "-n", "0"], "--num"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    files = {
        "file": "widths: [60, 128, 192]\ndepths: [1, 2, 3]\nheads: [4, 4, 4]\n",
        "bad_yaml": "widths: [64, 128\n",
        "unknown_key": "widths: [64, 128, 192]\ndepth: [1, 2, 3]\nheads: [4, 4, 4]\n",
    }
    resolved = []
    for a in args:
        if a.startswith("{"):
            p = tmp_path / f"{a[1:-1]}.yaml"
            p.write_text(files[a[1:-1]])
            a = str(p)
        resolved.append(a)
    r = run_main(capsys, *resolved)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_input_in_a_real_process_has_no_traceback():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().startswith("error: No such command") and len(r.stderr.strip().splitlines()) == 1


def test_train_and_search_name_the_training_settings_by_their_own_flags():
    """The library's training errors name settings (TrainRecipe.epochs, ...); `train` renders
    them as --epochs/--batch/--workers, `search` as --train-epochs/--train-batch/--train-workers."""
    from effvit_nas.cli.common import setting_flags
    from effvit_nas.cli.train import TRAIN_FLAGS
    from effvit_nas.cli.train_top import TRAIN_TOP_FLAGS
    from effvit_nas.data import DataConfig
    from effvit_nas.errors import SettingError, UserError
    from effvit_nas.training.recipe import recipe_for
    from effvit_nas.training.runner import TrainExecution

    cases = [
        (lambda: recipe_for(DataConfig(), {"epochs": 0}), "TrainRecipe.epochs", "--epochs", "--train-epochs"),
        (lambda: recipe_for(DataConfig(), {"batch": 1}), "TrainRecipe.batch", "--batch", "--train-batch"),
        (lambda: TrainExecution(workers=0), "TrainExecution.workers", "--workers", "--train-workers"),
    ]
    for make, setting, train_flag, search_flag in cases:
        with pytest.raises(SettingError, match=f"^{setting} "):
            make()
        for flags, flag in ((TRAIN_FLAGS, train_flag), (TRAIN_TOP_FLAGS, search_flag)):
            with pytest.raises(UserError) as e, setting_flags(flags):
                make()
            assert type(e.value) is UserError and str(e.value).startswith(f"{flag} "), str(e.value)
