"""Issue 45 item 7: an export never silently takes over another study's export folder."""

import json

import optuna

from tests.support import private_copy, run_main


def test_export_of_another_study_into_a_folder_is_refused_unless_forced(small_study, tmp_path, capsys):
    url, name = private_copy(small_study, tmp_path), small_study[1]
    optuna.copy_study(from_study_name=name, from_storage=url, to_storage=url, to_study_name="other-45")
    out = tmp_path / "models"
    assert run_main(capsys, "export", "--study", name, "--storage", url, "--out", str(out), "--trial", "0").returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = run_main(capsys, "export", "--study", "other-45", "--storage", url, "--out", str(out), "--trial", "0")
    assert r.returncode == 2 and r.stderr.startswith("error: --out") and r.stderr.count("\n") == 1, r.stderr
    assert f"study {name!r}" in r.stderr and "--force" in r.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    # a folder of another study's model, even without an index.json, is not overwritten either
    (out / "index.json").unlink()
    r = run_main(capsys, "export", "--study", "other-45", "--storage", url, "--out", str(out), "--trial", "0")
    assert r.returncode == 2 and "holds a model of study" in r.stderr
    r = run_main(capsys, "export", "--study", "other-45", "--storage", url, "--out", str(out), "--trial", "0", "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "index.json").read_text())["study"] == "other-45"
