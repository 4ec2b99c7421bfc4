"""Errors that reach the user as one line (the CLI turns them into exit code 2)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a preset name, a config value, a flag.

    The message is a complete sentence naming the offending thing; the CLI prints it on
    one line and exits with status 2 without a traceback.
    """


class ConfigError(UserError, ValueError):
    """An architecture config or a search space that is malformed or invalid."""


class SettingError(UserError, ValueError):
    """A library setting with a bad value.

    ``setting`` names it the way the library knows it (``"BenchSettings.batch"``,
    ``"run_search.workers"``), so the message makes sense to a Python caller; a front end
    that exposes the setting under another name (a CLI flag) renders ``problem`` with its own
    name instead (see :meth:`named`).
    """

    def __init__(self, setting: str, problem: str):
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")

    def __reduce__(self):
        # Ray ships errors raised in workers back by pickling them; the default would call
        # __init__ with the formatted message only.
        return (type(self), (self.setting, self.problem))

    @property
    def field(self) -> str:
        """The setting's own name, without its owner (``batch`` for ``BenchSettings.batch``)."""
        return self.setting.rsplit(".", 1)[-1]

    def named(self, name: str) -> UserError:
        """The same error, the setting called ``name`` (e.g. ``--batch``)."""
        return UserError(f"{name} {self.problem}")


# numpy's and Optuna's samplers take seeds below 2**32; stopping at 2**31 - 1 leaves room for
# the offsets added to a seed (reference seeds SEED+1..., one sampler seed per driver)
MAX_SEED = 2**31 - 1


def check_seed(setting: str, seed: int) -> None:
    """Refuse a seed no random generator in the pipeline accepts (negative, too large)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SettingError(setting, f"must be an integer from 0 to {MAX_SEED}, got {seed!r}")
