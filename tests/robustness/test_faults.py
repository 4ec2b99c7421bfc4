"""Faults found by benchmarks/faults.py (issue 45): a full disk during an export or a training
checkpoint is one line, and never leaves a file half-written over an earlier one."""

import errno

import pytest

from effvit_nas.errors import UserError
from effvit_nas.results.cards import replace_text, set_section
from effvit_nas.training.runner import _worker_error


def test_a_failed_write_keeps_the_earlier_file_whole(tmp_path):
    card = tmp_path / "README.md"
    set_section(card, "## Trained", "top-1 91.0 %")
    (tmp_path / ".README.md.tmp").mkdir()  # the write fails, as on a full disk
    with pytest.raises(OSError):
        replace_text(card, "half")
    assert "top-1 91.0 %" in card.read_text()
    (tmp_path / ".README.md.tmp").rmdir()
    replace_text(card, "new")
    assert card.read_text() == "new" and not (tmp_path / ".README.md.tmp").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_checkpoint_the_disk_cannot_take_is_one_line(tmp_path, code):
    group = Exception("failed")  # Ray Train's WorkerGroupError's shape: the workers' errors by rank
    group.worker_failures = {0: OSError(code, "Error writing bytes to file")}
    error = _worker_error(group, tmp_path / "o")
    assert isinstance(error, UserError) and str(tmp_path / "o") in str(error) and "\n" not in str(error)
    other = RuntimeError("a bug")
    assert _worker_error(other, tmp_path) is other
