"""Imports follow the layers: a function-level import outside the CLI says why it is lazy
(`# lazy: reason`), and importing the CLI loads none of the heavy libraries."""

import ast
import subprocess
import sys
from pathlib import Path

import effvit_nas

PACKAGE = Path(effvit_nas.__file__).parent


def _unmarked_lazy_imports(source: str) -> list[int]:
    """Lines of the imports inside a function of ``source`` with no ``# lazy:`` on their
    first or last line."""
    lines = source.splitlines()
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    said = lines[node.lineno - 1] + lines[(node.end_lineno or node.lineno) - 1]
                    if "# lazy:" not in said:
                        found.add(node.lineno)
    return sorted(found)


def test_the_check_sees_an_unmarked_import():
    source = "import os\n\ndef f():\n    import json\n    import torch  # lazy: loads torch\n    from a import (  # lazy: why\n        b,\n    )\n"
    assert _unmarked_lazy_imports(source) == [4]


def test_every_function_level_import_outside_the_cli_says_why():
    files = [f for f in sorted(PACKAGE.rglob("*.py")) if f.relative_to(PACKAGE).parts[0] != "cli"]
    assert len(files) > 20  # the package, not an empty folder
    hits = [f"{f.relative_to(PACKAGE.parent)}:{n}" for f in files for n in _unmarked_lazy_imports(f.read_text())]
    assert hits == [], "a function-level import needs `# lazy: reason` (or belongs at the module top)"


def test_importing_the_cli_loads_no_heavy_library():
    """`effvit-nas --help` and every usage error stay fast: torch, Optuna and Ray load only in
    the commands that use them (a fresh interpreter: the test process may have them loaded)."""
    code = "import sys, effvit_nas.cli.app; print(sorted(m for m in ('torch', 'optuna', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
