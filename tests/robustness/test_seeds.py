"""Issue 45 item 4: an invalid seed is one line, exit 2, before any study or file exists."""

import pytest

from effvit_nas.errors import MAX_SEED, SettingError, check_seed
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.training.recipe import TrainRecipe
from tests.support import run_main


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--space", "tiny", "--trials", "3", "--proxy", "macs"],
        ["fidelity", "--space", "tiny"],
        ["proxy", "M0", "--data", "synthetic"],
        ["train", "M0"],
        ["space", "sample"],
        ["supernet", "train"],
    ],
)
@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_invalid_seeds_are_one_line_and_store_nothing(tmp_path, capsys, monkeypatch, args, seed):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "s.db"
    extra = ["--storage", f"sqlite:///{db}"] if args[0] in ("search", "fidelity") else []
    r = run_main(capsys, *args, *extra, "--seed", seed)
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and "--seed" in r.stderr
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_library_settings_name_the_seed():
    for bad in (-1, MAX_SEED + 1, True, 1.5):
        with pytest.raises(SettingError, match="seed must be an integer"):
            check_seed("X.seed", bad)
    with pytest.raises(SettingError, match=r"TrainRecipe\.seed"):
        TrainRecipe(seed=-1)
    with pytest.raises(SettingError, match=r"ShortTrainSettings\.seed"):
        ShortTrainSettings(seed=-1)
