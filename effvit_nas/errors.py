"""Errors that reach the user as one line (the CLI turns them into exit code 2)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a preset name, a config value, a flag.

    The message is a complete sentence naming the offending thing; the CLI prints it on
    one line and exits with status 2 without a traceback.
    """


class ConfigError(UserError, ValueError):
    """An architecture config or a search space that is malformed or invalid."""
