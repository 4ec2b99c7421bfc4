"""The one place where effvit-nas touches process-wide state, each for a stated reason.

Library calls leave the process as they found it: Optuna's log level is lowered only inside
:func:`quiet_optuna` and restored after; plots draw on their own Agg canvas without selecting a
global matplotlib backend. What cannot be scoped:

* ``RAY_ENABLE_UV_RUN_RUNTIME_ENV=0`` before Ray is first imported. Ray reads it at import
  time; left on, a driver started by ``uv run`` makes every Ray worker start through ``uv
  run`` again, re-resolving the environment and packaging the working directory (minutes per
  worker). effvit-nas is installed in the environment already, and must be on cluster nodes
  (runners/README.md). A value the user set is kept.
* ``RAY_AUTH_MODE=token`` before Ray starts or joins a cluster. Ray 2.60 enables token
  authentication by default for a local cluster, but only a process that says so explicitly
  sends the token when it joins one (``ray start`` clusters, ``--ray-address``), and an unset
  mode prints a warning on every run. Explicit token mode is Ray's default behaviour made
  explicit: the token (``~/.ray/auth_token``) is created for a new local cluster when missing.
  A value the user set (``disabled``) is kept.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType


def import_ray() -> ModuleType:
    """``ray``, imported with the environment above. Use this instead of ``import ray``."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    return ray


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING inside the block (no "A new study created" lines), without its
    experimental-feature warnings (heartbeats and metric names are used deliberately with
    ask/tell); the previous level is restored afterwards."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def root_cause(error: BaseException) -> BaseException:
    """The error a Ray worker or actor raised, not Ray's wrappers around it: ``RayTaskError``
    and ``ActorDiedError`` carry it as ``cause``, Ray Train's errors chain it as ``__cause__``.
    Chains of our own errors are left alone (their outer error is the one that explains)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None)
        if inner is None and type(error).__module__.startswith("ray."):
            inner = error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error
