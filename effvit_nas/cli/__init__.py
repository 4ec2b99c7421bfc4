"""The ``effvit-nas`` command line: one module per command group; each command parses its
flags, builds typed settings, calls one library function and renders the result.

Lazy: each command imports the library inside its function, so that ``--help`` and bad input
are answered without loading torch, Optuna or Ray (the only imports inside functions here).
"""

from effvit_nas.cli.app import app, main

__all__ = ["app", "main"]
