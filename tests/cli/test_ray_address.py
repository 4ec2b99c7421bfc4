"""Every command that uses Ray joins the cluster `--ray-address` names: a fake join records the
address and stops the command with one line, before any Ray starts."""

import shutil

import optuna
import pytest

from effvit_nas.errors import UserError
from tests.support import TINY_SEARCH, patch_everywhere, run_main

ADDRESS = "192.0.2.1:6379"  # TEST-NET-1: never a real cluster
SMALL_DATA = ["--img-size", "32", "--classes", "4", "--train-per-class", "4", "--val-per-class", "2"]


@pytest.fixture
def joined(monkeypatch):
    """The addresses commands asked to join (the fake refuses, as an unreachable cluster would)."""
    asked = []

    def fake_connect(address=None):
        asked.append(address)
        raise UserError(f"fake cluster: would join {address}")

    # every command's modules are imported first, so that each binding of connect is replaced
    import effvit_nas.fidelity.run
    import effvit_nas.results.export
    import effvit_nas.results.references
    import effvit_nas.search.loop
    import effvit_nas.training.supernet  # noqa: F401
    from effvit_nas.measure import actor

    patch_everywhere(monkeypatch, actor, "connect", fake_connect)
    return asked


def _commands(tmp_path, small_study) -> dict[str, list[str]]:
    shutil.copy(small_study[0].removeprefix("sqlite:///"), tmp_path / "copy.db")
    study = ["--study", small_study[1], "--storage", f"sqlite:///{tmp_path}/copy.db"]
    fresh = f"sqlite:///{tmp_path}/new.db"
    return {
        "bench": ["bench", "M0", "--device", "cpu", "--fresh", "--storage", fresh],
        "search": ["search", "--budget", "1k", "--trials", "1", "--storage", fresh, *TINY_SEARCH],
        "fidelity": ["fidelity", "--space", "tiny", "--archs", "3", "--storage", fresh, *SMALL_DATA],
        "train": ["train", "M0", "--epochs", "1", "--batch", "8", "--out", str(tmp_path / "run"), *SMALL_DATA],
        "supernet train": [
            "supernet",
            "train",
            "--space",
            "tiny",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "sn"),
            "--batch",
            "8",
            *SMALL_DATA[2:],
        ],
        "pareto --with-presets": ["pareto", *study, "--with-presets", "--json"],
        "export --remeasure": ["export", *study, "--out", str(tmp_path / "models"), "--remeasure"],
    }


@pytest.mark.parametrize(
    "command", ["bench", "search", "fidelity", "train", "supernet train", "pareto --with-presets", "export --remeasure"]
)
def test_every_ray_command_joins_the_named_cluster(command, tmp_path, small_study, joined, capsys):
    r = run_main(capsys, *_commands(tmp_path, small_study)[command], "--ray-address", ADDRESS)
    assert r.returncode == 2 and r.stderr.strip() == f"error: fake cluster: would join {ADDRESS}", r.stderr
    assert joined == [ADDRESS]
    if command == "search":  # refused before the study exists: the corrected command starts clean
        new = tmp_path / "new.db"
        assert not new.exists() or optuna.get_all_study_names(f"sqlite:///{new}") == []
