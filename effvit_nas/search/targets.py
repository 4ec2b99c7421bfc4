"""Deployment targets of a study: ``DEVICE[/BACKEND]:BUDGET`` (``search --target``, repeatable),
e.g. ``cpu/trace:2xM0``, ``cpu/openvino:4ms``, ``cuda:1/tensorrt:20k-imgs/s``.

Each target is one device, one runtime and one budget, whose unit says its metric (ms:
latency; img/s: throughput; a relative budget: ``metric``, default throughput). In a study each
target is a constraint (its budget) and an objective (its figure); this module parses and
checks them (:class:`~effvit_nas.search.problem.TargetProblem` is a target with its budget
resolved, :mod:`effvit_nas.search.target_actors` how each is measured).
"""

from __future__ import annotations

from dataclasses import dataclass

from effvit_nas.errors import SettingError, UserError
from effvit_nas.measure.backends import NAMES as BACKENDS
from effvit_nas.measure.devices import parse_device

DEFAULT_BACKEND = "trace"  # the paper's


@dataclass(frozen=True)
class Target:
    """One target: ``device`` as named (``cpu``, ``cuda:0``, ``a100``), ``backend``
    (:data:`effvit_nas.measure.backends.NAMES`), ``budget`` as given (canonical spacing), and
    the ``metric`` that budget is in."""

    device: str
    backend: str
    budget: str
    metric: str

    def spec(self) -> str:
        """The target as ``DEVICE/BACKEND:BUDGET`` (parses back to itself, given its metric)."""
        return f"{self.device}/{self.backend}:{self.budget}"


def parse_target(text: str, metric: str | None = None) -> Target:
    """The target ``text`` names; ``metric``: a relative budget's (default throughput).
    SettingError (``Target``) naming what is wrong: the form, the device, the backend, the budget.

    The budget follows the *last* colon, since a device may hold one (``cuda:1``) and no budget does.
    """
    from effvit_nas.search.budget import budget_metric  # lazy: loads torch (through the search's problem)

    where, colon, budget = text.strip().rpartition(":")
    if not colon or not where or not budget.strip():
        raise SettingError("Target", f"{text!r} is not DEVICE[/BACKEND]:BUDGET (e.g. cpu/openvino:4ms, cuda/tensorrt:2xM0)")
    device, slash, backend = where.partition("/")
    backend = backend.strip().lower() if slash else DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise SettingError("Target", f"{text!r}: backend {backend!r} is unknown (choose from {', '.join(BACKENDS)})")
    try:
        parse_device(device.strip())
    except UserError as e:
        raise SettingError("Target", f"{text!r}: {e}") from None
    try:
        found = budget_metric(budget.strip(), metric)
    except SettingError as e:
        raise SettingError("Target", f"{text!r}: budget {e.problem}") from None
    return Target(device.strip().lower(), backend, "".join(budget.split()), found)


def parse_targets(texts: tuple[str, ...] | list[str], metric: str | None = None) -> tuple[Target, ...]:
    """Every ``--target``; SettingError for two targets on the same device and backend and metric
    (a study has one figure per target: two budgets there are one constraint)."""
    targets = tuple(parse_target(t, metric) for t in texts)
    seen: dict[tuple[str, str, str], Target] = {}
    for t in targets:
        key = (t.device, t.backend, t.metric)
        if key in seen:
            raise SettingError(
                "Target", f"{seen[key].spec()} and {t.spec()} are both {t.metric} on {t.device}/{t.backend}: give one budget"
            )
        seen[key] = t
    return targets
