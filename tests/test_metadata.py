"""Project metadata a user relies on: one version, a licence, type information."""

import importlib.metadata
import re
from pathlib import Path

import effvit_nas

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_lives_in_one_place():
    """The installed distribution reads its version from effvit_nas/__init__.py (hatch dynamic)."""
    assert effvit_nas.__version__ == importlib.metadata.version("effvit-nas")
    assert not re.search(r"^version\s*=", (ROOT / "pyproject.toml").read_text(), re.M)
    assert f"({effvit_nas.__version__})" in (ROOT / "CHANGELOG.md").read_text()


def test_the_project_is_mit_licensed_and_typed():
    meta = importlib.metadata.metadata("effvit-nas")
    assert meta["License-Expression"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "effvit_nas" / "py.typed").exists()
