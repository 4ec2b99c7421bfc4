"""The one place where effvit-nas touches process-wide state, each for a stated reason.

Library calls leave the process as they found it: Optuna's log level is lowered only inside
:func:`quiet_optuna` and restored after; plots draw on their own Agg canvas without selecting a
global matplotlib backend. What cannot be scoped:

* ``RAY_ENABLE_UV_RUN_RUNTIME_ENV=0`` before Ray is first imported. Ray reads it at import
  time; left on, a driver started by ``uv run`` makes every Ray worker start through ``uv
  run`` again, re-resolving the environment and packaging the working directory (minutes per
  worker). effvit-nas is installed in the environment already, and must be on cluster nodes
  (runners/README.md). A value the user set is kept.
* SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) inside :func:`sigterm_interrupts`,
  which the command line wraps around each run: a ``kill`` or a scheduler stopping a search
  then takes the Ctrl-C path (the running trials are failed and re-enqueued, nothing stored is
  lost) instead of dying mid-write. The previous handler is restored after the block.
* ``RAY_AUTH_MODE=token`` before Ray starts or joins a cluster. Ray 2.60 enables token
  authentication by default for a local cluster, but only a process that says so explicitly
  sends the token when it joins one (``ray start`` clusters, ``--ray-address``), and an unset
  mode prints a warning on every run. Explicit token mode is Ray's default behaviour made
  explicit: the token (``~/.ray/auth_token``) is created for a new local cluster when missing.
  A value the user set (``disabled``) is kept.
* ``OMP_WAIT_POLICY=PASSIVE`` in the commands that train on the CPU (``proxy``, ``train``,
  ``supernet train``; :func:`passive_openmp`), before torch is first imported: OpenMP threads
  that wait at a barrier then sleep instead of spinning, so on a machine where another process
  holds a core, a thread that lost its core does not stall the others in spin loops (the train
  proxy took 3.5x as long beside one busy process on 2 cores, issue 45). Not for ``bench`` and
  ``search``: the device actor's timing protocol is theirs (effvit_nas.measure). A value the
  user set is kept.
* File descriptor 2 inside :func:`captured_stderr`, while joining a cluster: Ray's C++ client
  logs each refused connection attempt straight to it (bypassing Python's logging), a screen
  of lines that hides the one that matters; captured, they are read for the cause and dropped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

from effvit_nas.errors import UserError


def import_ray() -> ModuleType:
    """``ray``, imported with the environment above. Use this instead of ``import ray``."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray  # lazy: Ray costs seconds to import

    return ray


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING inside the block (no "A new study created" lines), without its
    experimental-feature warnings (heartbeats and metric names are used deliberately with
    ask/tell); the previous level is restored afterwards."""
    import optuna  # lazy: Optuna costs a second to import

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            yield
    finally:
        optuna.logging.set_verbosity(level)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """What this process (C++ code included) writes to file descriptor 2 inside the block goes
    to a temporary file instead of the terminal; the yielded list holds its text afterwards."""

    text: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            text.append(f.read().decode(errors="replace"))


AUTH_HELP = "token authentication is on: set RAY_AUTH_MODE=token and copy the head's ~/.ray/auth_token here (runners/README.md)"


def join_error(address: str, error: BaseException, log: str) -> str:
    """The one line that says why joining the Ray cluster at ``address`` failed, from Ray's
    exception and what its client logged meanwhile."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if type(error).__name__ == "AuthenticationError":
        # effvit-nas runs Ray in token mode, so a cluster started without authentication (plain
        # `ray start` on a machine without a token) refuses it this way too
        return (
            f"cannot join Ray at {address}: this process has no token (~/.ray/auth_token); copy the head's token here "
            "(runners/ray_node.sh, runners/README.md), or set RAY_AUTH_MODE=disabled for a cluster started without authentication"
        )
    if "InvalidAuthToken" in log or "Unauthenticated" in log:
        return f"cannot join Ray at {address}: the cluster refused this process's token; {AUTH_HELP}"
    return f"cannot start/join Ray ({address}): {first}"


def root_cause(error: BaseException) -> BaseException:
    """The error a Ray worker or actor raised, not Ray's wrappers around it: ``RayTaskError``
    carries it as ``cause``; an ``ActorDiedError`` from a failed ``__init__`` holds that
    ``RayTaskError`` as its first argument (it keeps no ``cause``); Ray Train's errors chain it
    as ``__cause__``. Chains of our own errors are left alone (their outer error explains)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None)
        from_ray = type(error).__module__.startswith("ray.")
        if inner is None and from_ray and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if inner is None and from_ray:
            inner = error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


RAY_CURRENT_CLUSTER = "/tmp/ray/ray_current_cluster"  # where `ray start` records its address


def cluster_endpoint(address: str) -> tuple[str, int] | None:
    """The ``(host, port)`` a Ray address connects to first: ``HOST:PORT``, ``ray://HOST:PORT``,
    or ``auto`` (the address ``ray start`` recorded on this machine). None where there is
    nothing to probe (``local``, ``auto`` with no record, a form Ray resolves itself)."""
    if address == "auto":
        try:
            with open(RAY_CURRENT_CLUSTER) as f:
                address = f.read().strip()
        except OSError:
            return None  # Ray says itself, at once, that no cluster is running
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise a one-line UserError when nothing answers at the Ray address ``address``.

    Ray retries a dead address for a minute or more, silently; a TCP connect answers in
    milliseconds (refused) or ``timeout_s`` (unroutable)."""

    endpoint = cluster_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout_s).close()
    except OSError as e:
        where = f"{endpoint[0]}:{endpoint[1]}" + (f" (recorded by `ray start` in {RAY_CURRENT_CLUSTER})" if address == "auto" else "")
        raise UserError(
            f"no Ray cluster answers at {where}: {e.strerror or e}; start it (`ray start --head`) "
            "or leave out --ray-address to run a local Ray"
        ) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt (see the module doc)."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread (elsewhere, where
    Python allows no handler, the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Restore the SIGTERM handler after the block: ``ray.init`` installs its own (``sys.exit``),
    which would bypass :func:`sigterm_interrupts`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def passive_openmp() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set (see the module doc); only takes effect in a
    process that has not loaded OpenMP (imported torch) yet, and in the Ray workers it starts."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def free_cpus() -> int:
    """CPUs this process may use that no other process keeps busy: its CPU affinity less the
    1-minute load average (at least 1). Sizing torch's threads by it makes a loaded machine slow
    work roughly in proportion, instead of the threads waiting on each other's lost cores."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        busy = 0
    return max(1, min(allowed, allowed - busy))
