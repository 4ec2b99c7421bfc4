"""The ``effvit-nas`` command line: one module per command group; each command parses its
flags, builds typed settings, calls one library function and renders the result.
"""

from effvit_nas.cli.app import app, main

__all__ = ["app", "main"]
