import pickle

from effvit_nas.errors import SettingError, UserError


def test_setting_error_names_the_setting_and_renames_for_a_front_end():
    e = SettingError("BenchSettings.batch", "must be positive, got 0")
    assert str(e) == "BenchSettings.batch must be positive, got 0" and e.field == "batch"
    assert isinstance(e, UserError) and str(e.named("--batch")) == "--batch must be positive, got 0"


def test_setting_error_survives_pickling():
    """Ray sends errors raised in its workers back pickled; the setting must survive."""
    e = pickle.loads(pickle.dumps(SettingError("ShortTrainSettings.steps", "must be positive, got -1")))
    assert (
        isinstance(e, SettingError)
        and e.setting == "ShortTrainSettings.steps"
        and str(e.named("--steps")) == "--steps must be positive, got -1"
    )


def _database_full() -> Exception:
    """What Optuna raises when SQLite cannot write: its own error chained from SQLAlchemy's."""
    import sqlite3

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    try:
        try:
            raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
        except OperationalError as e:
            raise StorageInternalError("An exception is raised during the commit.") from e
    except StorageInternalError as e:
        return e


def test_a_database_failing_in_any_command_is_one_line_and_exit_2(monkeypatch, capsys):
    """Whatever command meets a failing database (disk full, read-only) ends with the
    database's own reason on one line, exit 2; any other exception stays a traceback (a bug)."""
    import importlib

    import pytest

    app = importlib.import_module("effvit_nas.cli.app")  # the package exports the click group as `app`

    def fail(error):
        def main(**_):
            raise error

        return main

    monkeypatch.setattr(app.app, "main", fail(_database_full()))
    with pytest.raises(SystemExit) as stop:
        app.main(["studies"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err
    assert err.startswith("error: the database failed while writing: database or disk is full;")
    monkeypatch.setattr(app.app, "main", fail(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        app.main(["studies"])


def test_storage_that_is_no_database_gets_one_line_and_no_file_is_created(tmp_path, capsys):
    """A typo in a read-only command's --storage creates no empty database; a text file, or a
    dialect whose driver is not installed, is named as such (not a "failed while writing")."""
    from tests.support import run_main

    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    cases = [
        (f"sqlite:///{tmp_path}/typo.db", "no database file"),
        (f"sqlite:///{notes}", "file is not a database"),
        ("mysql://user@127.0.0.1:1/db", "needs the Python module"),
    ]
    for url, needle in cases:
        r = run_main(capsys, "studies", "--storage", url)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "writing" not in lines[0], (url, r.stderr)
    assert not (tmp_path / "typo.db").exists() and notes.read_text() == "not a database\n"
