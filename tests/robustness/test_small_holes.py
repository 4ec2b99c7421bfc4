"""Issue 45 item 8: the smaller holes, each one line and exit 2 (or the documented status)."""

import os
import stat

import pytest

from effvit_nas.errors import SettingError
from effvit_nas.measure.store import MeasurementStore, StorageError, is_in_memory
from effvit_nas.search.budget import parse_relative
from effvit_nas.search.problem import parse_budget
from tests.support import run_main


def _one_line(r, needle: str) -> None:
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_report_only_does_not_create_a_database(tmp_path, capsys):
    db = tmp_path / "missing.db"
    r = run_main(capsys, "fidelity", "--space", "tiny", "--report-only", "--storage", f"sqlite:///{db}")
    _one_line(r, "no database file")
    assert not db.exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_in_memory_storage_is_refused_by_search_and_bench(tmp_path, capsys, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    assert is_in_memory(url)
    r = run_main(
        capsys, "search", "--device", "cpu", "--budget", "100", "--space", "tiny", "--trials", "3", "--proxy", "macs", "--storage", url
    )
    _one_line(r, "in-memory database")
    r = run_main(capsys, "bench", "M0", "--storage", url)
    _one_line(r, "in-memory database")
    assert not is_in_memory(f"sqlite:///{tmp_path}/s.db") and not is_in_memory("postgresql+psycopg://u@h/db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
def test_bench_on_a_read_only_database_fails_before_measuring(tmp_path, capsys):
    db = tmp_path / "ro.db"
    MeasurementStore(f"sqlite:///{db}")
    db.chmod(stat.S_IRUSR)
    r = run_main(capsys, "bench", "M0", "--storage", f"sqlite:///{db}", "--duration", "30")
    _one_line(r, "readonly")
    assert "img/s" not in r.stdout


def test_a_read_only_store_says_so_before_any_write(tmp_path):
    """As root (no file permission stops root) the read-only case is a read-only SQLite URI."""
    db = tmp_path / "ro.db"
    MeasurementStore(f"sqlite:///{db}")
    MeasurementStore(f"sqlite:///{db}").check_writable()  # a writable store passes, and keeps no row
    store = MeasurementStore(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(StorageError, match="readonly"):
        store.check_writable()


@pytest.mark.parametrize("text", ["9" * 400 + "k", "1" * 320, "999999999999k", "9" * 400 + "xM0", "1e100"])
def test_overflowing_budgets_are_refused(text):
    with pytest.raises(SettingError):
        parse_relative(text) or parse_budget(text)


def test_search_exits_130_after_ctrl_c(tmp_path, capsys, monkeypatch):
    """The search saves what it has and returns an interrupted summary; the status says so."""
    import effvit_nas.search.loop as loop

    def interrupted(problem, options, progress=None):
        return loop.SearchSummary(options.study, options.storage, 1, 0, 1, [], 0, 0, 0, 1.0, interrupted=True)

    monkeypatch.setattr(loop, "run_search", interrupted)
    # --no-anchor: an absolute budget is otherwise on M0's scale, whose anchor takes a minute to measure here
    args = ["search", "--device", "cpu", "--budget", "100", "--no-anchor", "--space", "tiny", "--trials", "3", "--proxy", "macs", "--quiet"]
    r = run_main(capsys, *args, "--storage", f"sqlite:///{tmp_path}/s.db")
    assert r.returncode == 130 and "interrupted" in r.stdout


def test_discard_removes_only_a_folder_the_run_created_and_left_empty(tmp_path):
    from effvit_nas.training.runner import _discard

    made = tmp_path / "made"
    (made / "checkpoints" / "train").mkdir(parents=True)
    _discard(made, created=True)
    assert not made.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    _discard(kept, created=False)
    assert (kept / "notes.txt").exists()
