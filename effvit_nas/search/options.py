"""How one search run goes: where the study lives, when to stop, the sampler, parallelism,
heartbeats. None of it changes what a trial's numbers mean, so it may differ between the runs
that share a study."""

from __future__ import annotations

import re
from dataclasses import dataclass

from effvit_nas.errors import SettingError, check_seed

SAMPLERS = ("tpe", "nsga2", "random")


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise SettingError("RunOptions.timeout_s", f"{text[:40]!r} is not a duration: use e.g. 90s, 30m or 2h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not seconds <= MAX_DURATION_S:  # also a digit string too long for a float (inf)
        raise SettingError("RunOptions.timeout_s", f"{text[:40]!r} is more than a year; leave out --timeout to search without one")
    return seconds


MAX_DURATION_S = 366 * 24 * 3600


@dataclass(frozen=True)
class RunOptions:
    """How a search runs.

    Attributes:
        study: study name.
        storage: SQLAlchemy URL of the study database (SQLite file or PostgreSQL).
        trials: finished trials the study should hold at the end (a resumed study runs only
            the missing ones); ``timeout_s``: stop after this many seconds. One is needed.
        sampler: ``tpe`` (default), ``nsga2`` or ``random``.
        workers: proxies that run at once.
        measure_actors: device actors measuring at once; None: one per matching accelerator
            (each GPU of the device's type; each node's CPU).
        ray_address: an existing Ray cluster, or None for a local Ray.
        seed: sampler seed.
        seed_presets: enqueue the M0-M5 that are points of the space first.
        heartbeat_s: seconds between trial heartbeats; a trial silent for 3x is failed and re-run.
        audit_every: measure 1 in N predicted-infeasible candidates anyway (checks the
            throughput model).
        max_failures: stop once more candidates than this failed; default max(10, 2 x trials).
    """

    study: str
    storage: str
    trials: int | None = None
    timeout_s: float | None = None
    sampler: str = "tpe"
    workers: int = 1
    measure_actors: int | None = None
    ray_address: str | None = None
    seed: int = 0
    seed_presets: bool = False
    heartbeat_s: float = 30.0
    audit_every: int = 4
    max_failures: int | None = None

    def __post_init__(self) -> None:
        check_seed("RunOptions.seed", self.seed)
        if self.trials is None and self.timeout_s is None:
            raise SettingError("RunOptions.trials", "is needed when RunOptions.timeout_s is not given (how long to search)")
        if self.trials is not None and self.trials < 1:
            raise SettingError("RunOptions.trials", f"must be positive, got {self.trials}")
        if self.workers < 1:
            raise SettingError("RunOptions.workers", f"must be positive, got {self.workers}")
        if self.measure_actors is not None and self.measure_actors < 1:
            raise SettingError("RunOptions.measure_actors", f"must be positive, got {self.measure_actors}")
        if self.sampler not in SAMPLERS:
            raise SettingError("RunOptions.sampler", f"{self.sampler!r} is unknown (choose from {', '.join(SAMPLERS)})")
        if self.audit_every < 1:
            raise SettingError("RunOptions.audit_every", f"must be positive, got {self.audit_every}")

    @property
    def failure_limit(self) -> int:
        return self.max_failures if self.max_failures is not None else max(10, 2 * (self.trials or 10))


def make_sampler(options: RunOptions, driver: int = 0):
    """The Optuna sampler ``options`` name, for the ``driver``-th process to open the study.

    The first driver samples with ``options.seed`` (a run alone is reproducible); each later one
    with a seed of its own, or drivers started together on one study (Optuna's distributed
    pattern, same command) would propose the same architectures in the same order. TPE lies
    about running trials (constant liar), so candidates in flight, in this driver or another,
    are not proposed again."""
    import optuna  # lazy: Optuna costs a second to import

    seed = options.seed if driver == 0 else (options.seed * 1_000_003 + driver) % 2**32
    if options.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=8)
    if options.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    return optuna.samplers.RandomSampler(seed=seed)
