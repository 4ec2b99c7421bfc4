"""The study a search runs in: opening (or creating) it in Optuna's RDB storage, checking it
is about the same problem, heartbeats of running trials, and finishing a trial."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from effvit_nas.arch.space import load_space
from effvit_nas.errors import ConfigError, UserError
from effvit_nas.measure.settings import with_later_fields
from effvit_nas.measure.store import optuna_storage, schema_lock
from effvit_nas.proxy.registry import SUPERNET
from effvit_nas.runtime import quiet_optuna
from effvit_nas.search.options import RunOptions, make_sampler
from effvit_nas.search.problem import LATER_KEYS, OBJECTIVES, SearchProblem
from effvit_nas.search.screening import Outcome, constraint_keys
from effvit_nas.trials.records import Attr, TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage


DRIVERS_ATTR = "drivers"  # study attribute: how many search processes have opened the study


@dataclass
class StudyHandle:
    """An open study with the storage it lives in (heartbeats and trial states need it)."""

    study: optuna.Study
    storage: BaseStorage
    study_id: int

    def trial_id(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def records(self, states: tuple[str, ...] | None = None) -> list[TrialRecord]:
        import optuna  # lazy: Optuna costs a second to import

        wanted = None if states is None else [optuna.trial.TrialState[s] for s in states]
        return [TrialRecord.of(t) for t in self.study.get_trials(deepcopy=False, states=wanted)]

    def first_complete(self, config_hash: str) -> TrialRecord | None:
        """The earliest complete trial of this architecture (None if there is none)."""
        return next((r for r in self.records(("COMPLETE",)) if r.config_hash == config_hash), None)


def _storage(url: str, heartbeat_s: float):
    from optuna.storages import RetryHeartbeatStaleTrialCallback  # lazy: Optuna costs a second to import

    with quiet_optuna():  # the callback is experimental in Optuna, used deliberately
        retry = RetryHeartbeatStaleTrialCallback(max_retry=2)
    return optuna_storage(
        url, heartbeat_interval=max(1, int(heartbeat_s)), grace_period=max(2, int(3 * heartbeat_s)), heartbeat_stale_trial_callback=retry
    )


def _check_same_problem(study: optuna.Study, problem: SearchProblem) -> None:
    want, have = problem.identity(), study.user_attrs.get("effvit")
    if have is None:
        study.set_metric_names(objective_names(problem))
        study.set_user_attr("effvit", want)
        study.set_user_attr("created", time.time())
        return
    have = {**LATER_KEYS, **have}
    _check_same_targets(study.study_name, have, want)
    if isinstance(have.get("bench"), dict):
        have = {**have, "bench": with_later_fields(have["bench"], want["bench"])}
    diff = [k for k in want if k not in SPACE_KEYS + PROXY_KEYS and have.get(k) != want[k]]
    if not _same_proxy(have, want):
        diff.insert(0, "proxy")
    if not _same_space(have, want):
        diff.insert(0, "space")
    if not diff:
        return
    key = diff[0]
    if key == "space" and "space_def" in have:  # the stored path may well be the same file, edited
        was, use = f"its choices differ from those in {want['space']!r}", "that space"
    elif key == "proxy" and all(str(d.get("proxy_def")).startswith("supernet@") for d in (have, want)):
        # the folder may well be the same one, retrained since

        digest, folder = have["proxy_def"].removeprefix("supernet@"), want["proxy"].removeprefix(SUPERNET)
        was, use = f"supernet weights {digest}, not those now in {folder!r}", "with these weights"
    elif key == "bench" and isinstance(have.get(key), dict):  # name the settings that differ, not two whole dicts
        fields = [k for k in want[key] if have[key].get(k) != want[key][k]]
        was = ", ".join(f"BenchSettings.{k} {have[key].get(k)!r}, not {want[key][k]!r}" for k in fields)
        use = "with these settings, or give the study's"
    else:
        was, use = repr(have.get(key)), f"with {want[key]!r}"
    raise UserError(f"study {study.study_name!r} was created with another {key} ({was}); use a new --study name to search {use}")


def objective_names(problem: SearchProblem) -> list[str]:
    """The study's objectives: accuracy, then each target's figure (by its spec for several)."""
    return list(OBJECTIVES) if len(problem.targets) < 2 else ["accuracy", *(t.spec for t in problem.targets)]


def target_specs(identity: dict[str, Any]) -> list[str]:
    """The specs of a stored problem's targets ([] for a study of one target)."""
    return [t["spec"] for t in identity.get("targets") or []]


def _check_same_targets(name: str, have: dict[str, Any], want: dict[str, Any]) -> None:
    check_same_targets(name, target_specs(have), target_specs(want))


def check_same_targets(name: str, was: list[str], now: list[str]) -> None:
    """UserError when a study created for the targets ``was`` is resumed for ``now`` (specs;
    [] for a study of one target)."""
    if was != now:
        raise UserError(f"study {name!r} was created with {_said(was)}, not {_said(now)}; use a new --study name")


def _said(specs: list[str]) -> str:
    return f"targets {' '.join(specs)}" if specs else "one target (--device/--budget)"


SPACE_KEYS = ("space", "space_def")  # compared by _same_space
PROXY_KEYS = ("proxy", "proxy_def")  # compared by _same_proxy


def _same_proxy(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a stored study was scored by the wanted proxy: by what it is (a supernet by its
    weights), so a moved supernet folder resumes; a study stored before that was kept, by name."""
    if "proxy_def" in have:
        return have["proxy_def"] == want["proxy_def"]
    return have.get("proxy") == want["proxy"]


def _same_space(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a stored study searched the wanted space. By its choices, so a moved project or
    a reinstall (the same YAML at another path) resumes and an edited YAML does not; a study
    stored before the choices were kept is compared by its path, or by loading it."""

    if "space_def" in have:
        return have["space_def"] == want["space_def"]
    if have.get("space") == want["space"]:
        return True
    try:
        return load_space(have["space"]).to_dict() == want["space_def"]
    except ConfigError:  # the old path is gone: nothing says it was the same space
        return False


def open_study(problem: SearchProblem, options: RunOptions, create: bool = True) -> StudyHandle:
    """The study ``options.study`` in ``options.storage``, created if missing (when ``create``)
    and checked to be about ``problem`` when it exists."""
    import optuna  # lazy: Optuna costs a second to import

    storage = _storage(options.storage, options.heartbeat_s)
    # under the lock: drivers started together on one study create it and store what it is
    # about once, instead of racing to insert the same attribute rows
    with quiet_optuna(), schema_lock(storage.engine):
        exists = options.study in [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if not exists and not create:
            raise UserError(f"no study {options.study!r} in {options.storage}")
        study = optuna.create_study(
            study_name=options.study,
            storage=storage,
            directions=["maximize"] * len(objective_names(problem)),
            load_if_exists=True,
        )
        _check_same_problem(study, problem)
        # the lock makes this count atomic on PostgreSQL, where several drivers share a study
        driver = study.user_attrs.get(DRIVERS_ATTR, 0)
        study.set_user_attr(DRIVERS_ATTR, driver + 1)
        study.sampler = make_sampler(options, driver)
    return StudyHandle(study, storage, storage.get_study_id_from_name(options.study))


def stored_problem(options: RunOptions) -> dict[str, Any] | None:
    """What the existing study ``options.study`` is about (its stored problem), or None when
    there is no such study."""
    study = _existing(options)
    return None if study is None else study.user_attrs.get("effvit")


def search_finished(options: RunOptions) -> bool:
    """Whether the existing study ``options.study`` already holds ``options.trials`` complete
    trials, so that running it again measures and scores no candidate."""
    study = _existing(options)
    return study is not None and holds_trials(study, options.trials)


def holds_trials(study: optuna.Study, trials: int | None) -> bool:
    """Whether ``study`` has ``trials`` complete trials (never, for a run without --trials)."""
    import optuna  # lazy: Optuna costs a second to import

    if trials is None:
        return False
    with quiet_optuna():
        return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= trials


def _existing(options: RunOptions) -> Any:
    import optuna  # lazy: Optuna costs a second to import

    storage = optuna_storage(options.storage)
    with quiet_optuna():
        try:
            return optuna.load_study(study_name=options.study, storage=storage)
        except KeyError:
            return None


def tell(handle: StudyHandle, trial: optuna.Trial, outcome: Outcome) -> None:
    """Finish ``trial`` with ``outcome``: the one place a trial's state is decided."""
    import optuna  # lazy: Optuna costs a second to import

    for key, value in outcome.attrs.items():
        trial.set_user_attr(str(key), value)
    with quiet_optuna():
        if outcome.failed:
            handle.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        if outcome.values is None:
            raise ValueError(f"a {outcome.kind.value} outcome has no objective values")
        if outcome.constraint is not None:
            constraints = (outcome.constraint, *outcome.more_constraints)
            for name, value in zip(constraint_keys(len(constraints)), constraints, strict=True):
                trial.set_constraint(name, value)
        handle.study.tell(trial, list(outcome.values))


def repair_stale(handle: StudyHandle) -> None:
    """Fail the RUNNING trials whose heartbeat is older than the grace period (their process
    died) and enqueue their parameters again (the storage's retry callback)."""
    from optuna.storages import fail_stale_trials  # lazy: Optuna costs a second to import

    with quiet_optuna():
        fail_stale_trials(handle.study)


def interrupt(handle: StudyHandle, trials: list[Any]) -> None:
    """Ctrl-C: fail the unfinished trials in flight and enqueue them again for the next run."""
    import optuna  # lazy: Optuna costs a second to import

    for trial in trials:
        if handle.storage.get_trial(handle.trial_id(trial)).state == optuna.trial.TrialState.RUNNING:
            trial.set_user_attr(str(Attr.FAIL_REASON), "interrupted (Ctrl-C or SIGTERM); re-enqueued")
            with quiet_optuna():
                handle.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                handle.study.enqueue_trial(trial.params)


class Heartbeat:
    """Records heartbeats of the running trials in flight so that a dead run's trials go stale
    (Optuna then fails them and retries their parameters)."""

    def __init__(self, storage: Any, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for tid in list(self.trial_ids):
                with contextlib.suppress(Exception):  # a missed beat only makes the trial look older
                    self.storage.record_heartbeat(tid)

    def assign(self, trial_ids: list[int]) -> None:
        """Track these trials, beating at once for each new one: Optuna only ever finds a trial
        stale if it has a heartbeat, so a process killed before the first interval would leave
        it RUNNING."""
        known = set(self.trial_ids)
        for tid in trial_ids:
            if tid not in known:
                self.storage.record_heartbeat(tid)
        self.trial_ids = list(trial_ids)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
