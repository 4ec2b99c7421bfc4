"""The search: Optuna multi-objective (proxy accuracy, throughput) under a throughput budget.

Execution model (why ask/tell and not Ray Tune): Optuna's RDB storage is the single source of
truth, so resuming, heartbeats and PostgreSQL sharing come from Optuna alone; Ray only runs
work. Each round the driver asks Optuna for up to ``workers`` candidates and then

1. measures throughput first, one candidate at a time, in the device's Ray actor (reusing the
   measurement store), skipping candidates the feasibility model calls clearly infeasible;
2. runs the proxy of every candidate that met the budget in parallel Ray tasks;
3. tells Optuna: values (accuracy, throughput) and the constraint (budget - throughput) /
   budget, feasible when <= 0, so feasible trials rank first.

The two phases never overlap, so no proxy training disturbs a timing on the same machine.
Trials of a dead process are failed by their stale heartbeat and re-run; a candidate that
raises is stored as failed with its reason; Ctrl-C fails the round's running trials,
re-enqueues them and stops with everything stored.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.throughput_model import FeasibilityModel, features
from effvit_nas.proxy.data import DataConfig
from effvit_nas.proxy.short_training import ShortTrainSettings
from effvit_nas.results.pareto import is_feasible, pareto_trials
from effvit_nas.results.studies import trial_record

SAMPLERS = ("tpe", "nsga2", "random")
OBJECTIVES = ("accuracy", "throughput")


def parse_budget(text: str) -> float:
    """``10k-imgs/s``, ``10000img/s``, ``2.5k``, ``300-imgs/s`` -> images per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:-?\s*imgs?\s*/\s*s)?\s*", text)
    if not m:
        raise UserError(f"invalid --budget {text!r}: use e.g. 10k-imgs/s, 10000img/s, 2.5k or 300-imgs/s")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"invalid --budget {text!r}: must be positive")
    return value


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"invalid --timeout {text!r}: use e.g. 90s, 30m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass(frozen=True)
class SearchSettings:
    """Everything one search run needs. ``trials``: finished trials the study should hold."""

    device: str
    budget: float
    study: str
    storage: str
    space: str = "efficientvit"
    proxy: str = "naswot"
    data: DataConfig = DataConfig()
    train: ShortTrainSettings = ShortTrainSettings()
    bench: BenchSettings = BenchSettings(batch=16)
    trials: int | None = None
    timeout_s: float | None = None
    sampler: str = "tpe"
    workers: int = 1
    ray_address: str | None = None
    seed: int = 0
    seed_presets: bool = False
    heartbeat_s: float = 30.0
    audit_every: int = 4  # measure 1 in N predicted-infeasible candidates anyway

    def __post_init__(self) -> None:
        if self.trials is None and self.timeout_s is None:
            raise UserError("give --trials N or --timeout DURATION")
        if self.trials is not None and self.trials < 1:
            raise UserError(f"--trials must be positive, got {self.trials}")
        if self.workers < 1:
            raise UserError(f"--workers must be positive, got {self.workers}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r} (choose from {', '.join(SAMPLERS)})")

    def identity(self) -> dict[str, Any]:
        """What a study is about; resuming with different values would mix incomparable trials."""
        return {
            "device": self.device,
            "budget": self.budget,
            "space": self.space,
            "proxy": self.proxy,
            "data": asdict(self.data),
            "train": asdict(self.train),
            "bench": asdict(self.bench),
        }


@dataclass
class TrialEvent:
    """What the progress display gets after every finished trial."""

    number: int
    state: str
    config_hash: str
    throughput: float | None
    accuracy: float | None
    feasible: bool
    note: str
    done: int
    total: int | None
    feasible_count: int
    best_accuracy: float | None
    pareto_size: int
    eta_s: float | None


@dataclass
class SearchSummary:
    study: str
    storage: str
    complete: int
    failed: int
    feasible: int
    pareto: list[dict[str, Any]]
    skipped_predicted: int
    audited: int
    audit_correct: int
    seconds: float
    interrupted: bool = False
    run_trials: int = 0
    setup_s: float = 0.0  # Ray start, study, data, before the first trial
    measure_s: float = 0.0  # wall time in throughput measurement calls
    proxy_s: float = 0.0  # wall time from submitting a round's proxies to their last result
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna marks heartbeats, metric names and stale-trial handling experimental, and warns
    that heartbeats are meant for Study.optimize; we use them deliberately with ask/tell."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


def _sampler(name: str, seed: int, workers: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1, n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(settings: SearchSettings, create: bool = True):
    """The study in ``settings.storage``, created if missing (when ``create``) and checked to be
    about the same device, budget, space, proxy and protocol when it exists."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from effvit_nas.measure.store import open_engine

    open_engine(settings.storage)  # one-line errors for bad URLs / unreachable servers
    with _quiet_optuna():
        storage = RDBStorage(
            settings.storage,
            heartbeat_interval=max(1, int(settings.heartbeat_s)),
            grace_period=max(2, int(3 * settings.heartbeat_s)),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exists = settings.study in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not exists and not create:
        raise UserError(f"no study {settings.study!r} in {settings.storage}")
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        directions=["maximize", "maximize"],
        sampler=_sampler(settings.sampler, settings.seed, settings.workers),
        load_if_exists=True,
    )
    want = settings.identity()
    have = study.user_attrs.get("effvit")
    if have is None:
        with _quiet_optuna():
            study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("effvit", want)
        study.set_user_attr("created", time.time())
    else:
        diff = [k for k in want if have.get(k) != want[k]]
        if diff:
            raise UserError(
                f"study {settings.study!r} was created with another {diff[0]} ({have.get(diff[0])!r}); "
                f"use a new --study name to search with {want[diff[0]]!r}"
            )
    return study


def _proxy_task(proxy: str, config: dict[str, Any], data: Any, train: dict[str, Any]) -> dict[str, Any]:
    from effvit_nas.proxy.registry import evaluate_proxy

    return evaluate_proxy(proxy, ArchConfig.from_dict(config), data, ShortTrainSettings(**train)).to_dict()


class _Heartbeat:
    """Records heartbeats of the round's running trials so that a dead run's trials go stale."""

    def __init__(self, storage: Any, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for tid in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(tid)
                except Exception:  # a missed beat only makes the trial look older
                    pass

    def assign(self, trial_ids: list[int]) -> None:
        """Track these trials, beating once at once: Optuna only ever finds a trial stale if it
        has a heartbeat, so a process killed before the first interval would leave it RUNNING."""
        for tid in trial_ids:
            self.storage.record_heartbeat(tid)
        self.trial_ids = trial_ids

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _finished_with_hash(study, config_hash: str, number: int):
    """The earliest complete trial of this architecture other than ``number``, or None."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        if t.number != number and t.user_attrs.get("config_hash") == config_hash:
            return t
    return None


def run_search(settings: SearchSettings, on_event: Callable[[TrialEvent], None] | None = None) -> SearchSummary:
    """Run (or resume) the search described by ``settings``; see the module doc."""
    import optuna

    from effvit_nas.runtime import import_ray

    ray = import_ray()
    from optuna.storages import fail_stale_trials

    from effvit_nas.arch.space import load_space
    from effvit_nas.measure.actor import connect, get_worker, measure_configs
    from effvit_nas.measure.devices import parse_device, resolve_local
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.measure.timing import check_supported
    from effvit_nas.model.cost import model_cost
    from effvit_nas.proxy.data import load_data

    t_start = time.perf_counter()
    space = load_space(settings.space)
    if settings.ray_address is None:  # fail on a missing device before touching the study
        check_supported(settings.bench, resolve_local(parse_device(settings.device)))
    study = open_study(settings)
    with _quiet_optuna():
        fail_stale_trials(study)
    store = MeasurementStore(settings.storage)
    data = load_data(settings.data) if settings.proxy not in ("params", "macs") else None
    states = optuna.trial.TrialState

    def complete_trials() -> list:
        return study.get_trials(deepcopy=False, states=[states.COMPLETE])

    if settings.seed_presets:
        known = {t.user_attrs.get("config_hash") for t in study.get_trials(deepcopy=False)}
        for name, p in PRESETS.items():
            cfg = p.replace(num_classes=space.num_classes)
            if space.contains(cfg) and cfg.short_hash() not in known:
                study.enqueue_trial(space.params_from_config(cfg), user_attrs={"preset": name})

    feas = FeasibilityModel(settings.budget)
    for t in complete_trials():
        if t.user_attrs.get("measured") and t.user_attrs.get("throughput"):
            feas.add(
                features(ArchConfig.from_dict(t.user_attrs["config"]), t.user_attrs["params"], t.user_attrs["macs"]),
                t.user_attrs["throughput"],
            )
    skipped = sum(1 for t in complete_trials() if t.user_attrs.get("predicted_infeasible") and not t.user_attrs.get("measured"))
    audited = sum(1 for t in complete_trials() if t.user_attrs.get("predicted_infeasible") and t.user_attrs.get("measured"))
    audit_ok = sum(
        1
        for t in complete_trials()
        if t.user_attrs.get("predicted_infeasible") and t.user_attrs.get("measured") and t.user_attrs["throughput"] < settings.budget
    )
    connect(settings.ray_address)
    # One device actor for the whole run, started now: it lives while this handle does, and its
    # process start is set-up, not part of the first measurement.
    device_worker = get_worker(settings.device, settings.bench, settings.ray_address)
    ray.get(device_worker.fingerprint.remote())
    data_ref = ray.put(data) if data is not None else None
    proxy_remote = ray.remote(num_cpus=1)(_proxy_task)
    deadline = time.time() + settings.timeout_s if settings.timeout_s else None
    failures, run_trials, interrupted = 0, 0, False
    measure_s = proxy_s = 0.0
    storage = study._storage

    def emit(trial_number: int, state: str, h: str, tp: float | None, acc: float | None, feasible: bool, note: str) -> None:
        if on_event is None:
            return
        comp = complete_trials()
        feas_t = [t for t in comp if is_feasible(t)]
        front = pareto_trials(study)
        done = len(comp)
        elapsed = time.perf_counter() - t_start
        eta = None
        if settings.trials and run_trials:
            eta = elapsed / run_trials * max(settings.trials - done, 0)
        elif deadline:
            eta = max(deadline - time.time(), 0)
        best = max((t.values[0] for t in feas_t if t.user_attrs.get("measured", True)), default=None)
        on_event(TrialEvent(trial_number, state, h, tp, acc, feasible, note, done, settings.trials, len(feas_t), best, len(front), eta))

    setup_s = time.perf_counter() - t_start
    with _Heartbeat(storage, settings.heartbeat_s) as hb:
        while True:
            done = len(complete_trials())
            if settings.trials is not None and done >= settings.trials:
                break
            if deadline is not None and time.time() >= deadline:
                break
            if failures > max(10, 2 * (settings.trials or 10)):
                raise UserError(f"stopping: {failures} candidates failed (see `effvit-nas show --study {settings.study}`)")
            n = settings.workers if settings.trials is None else min(settings.workers, settings.trials - done)
            with _quiet_optuna():
                batch = [study.ask() for _ in range(n)]
            hb.assign([t._trial_id for t in batch])
            try:
                to_proxy = []
                for trial in batch:
                    try:
                        cfg = space.suggest(trial)
                        cost = model_cost(cfg)
                        for k, v in (
                            ("config", cfg.to_dict()),
                            ("config_hash", cfg.short_hash()),
                            ("params", cost.params),
                            ("macs", cost.macs),
                        ):
                            trial.set_user_attr(k, v)
                        prev = _finished_with_hash(study, cfg.short_hash(), trial.number)
                        if prev is not None:
                            for k in ("measured", "throughput", "accuracy", "proxy", "predicted_infeasible"):
                                if k in prev.user_attrs:
                                    trial.set_user_attr(k, prev.user_attrs[k])
                            trial.set_user_attr("note", f"same architecture as trial {prev.number}: result reused")
                            for key, value in prev.constraints.items():
                                trial.set_constraint(key, value)
                            study.tell(trial, list(prev.values))
                            run_trials += 1
                            feasible = is_feasible(prev)
                            emit(
                                trial.number,
                                "COMPLETE",
                                cfg.short_hash(),
                                prev.user_attrs.get("throughput"),
                                prev.user_attrs.get("accuracy"),
                                feasible,
                                f"repeat of trial {prev.number}",
                            )
                            continue
                        x = features(cfg, cost.params, cost.macs)
                        predicted = feas.predict(x)
                        skip = feas.clearly_infeasible(x)
                        if skip:
                            trial.set_user_attr("predicted_infeasible", True)
                            trial.set_user_attr("predicted_throughput", predicted)
                            if (skipped + audited + 1) % settings.audit_every != 0:
                                skipped += 1
                                trial.set_user_attr("measured", False)
                                trial.set_user_attr("throughput", None)
                                trial.set_user_attr("note", f"skipped: predicted {predicted:.0f} img/s < budget")
                                trial.set_constraint("throughput", (settings.budget - predicted) / settings.budget)
                                study.tell(trial, [0.0, predicted])
                                run_trials += 1
                                emit(trial.number, "COMPLETE", cfg.short_hash(), None, None, False, "skipped (predicted infeasible)")
                                continue
                            audited += 1
                            trial.set_user_attr("audit", True)
                        t_m = time.perf_counter()
                        m = measure_configs(
                            [cfg], settings.device, settings.bench, store, ray_address=settings.ray_address, worker=device_worker
                        )[0]
                        measure_s += time.perf_counter() - t_m
                        trial.set_user_attr("measured", True)
                        trial.set_user_attr("throughput", m.throughput)
                        trial.set_user_attr("throughput_iqr", [m.q1, m.q3])
                        trial.set_user_attr("device_id", m.device["id"])
                        feas.add(x, m.throughput)
                        if skip and m.throughput < settings.budget:
                            audit_ok += 1
                        trial.set_constraint("throughput", (settings.budget - m.throughput) / settings.budget)
                        if m.throughput < settings.budget:
                            trial.set_user_attr("note", "under budget: proxy skipped")
                            study.tell(trial, [0.0, m.throughput])
                            run_trials += 1
                            emit(trial.number, "COMPLETE", cfg.short_hash(), m.throughput, None, False, "under budget")
                        else:
                            to_proxy.append((trial, cfg, m.throughput))
                    except UserError:
                        raise
                    except Exception as e:  # a broken candidate must not stop the search
                        failures += 1
                        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
                        trial.set_user_attr("fail_reason", reason)
                        study.tell(trial, state=states.FAIL)
                        emit(trial.number, "FAIL", trial.user_attrs.get("config_hash", "?"), None, None, False, reason)
                t_p = time.perf_counter()
                futures = [
                    (trial, cfg, tp, proxy_remote.remote(settings.proxy, cfg.to_dict(), data_ref, asdict(settings.train)))
                    for trial, cfg, tp in to_proxy
                ]
                for trial, cfg, tp, fut in futures:
                    try:
                        r = ray.get(fut)
                        trial.set_user_attr("accuracy", r["value"])
                        trial.set_user_attr("proxy", r["proxy"])
                        trial.set_user_attr("proxy_seconds", r["seconds"])
                        study.tell(trial, [r["value"], tp])
                        run_trials += 1
                        emit(trial.number, "COMPLETE", cfg.short_hash(), tp, r["value"], True, "")
                    except Exception as e:
                        failures += 1
                        cause = getattr(e, "cause", e)
                        reason = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"[:500]
                        trial.set_user_attr("fail_reason", reason)
                        study.tell(trial, state=states.FAIL)
                        emit(trial.number, "FAIL", cfg.short_hash(), tp, None, False, reason)
                if futures:
                    proxy_s += time.perf_counter() - t_p
            except KeyboardInterrupt:
                interrupted = True
                for trial in batch:
                    if study._storage.get_trial(trial._trial_id).state == states.RUNNING:
                        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); re-enqueued")
                        study.tell(trial, state=states.FAIL)
                        study.enqueue_trial(trial.params)
                break
            finally:
                hb.assign([])

    front = pareto_trials(study)
    numbers = {t.number for t in front}
    comp = complete_trials()
    return SearchSummary(
        study=settings.study,
        storage=settings.storage,
        complete=len(comp),
        failed=len(study.get_trials(deepcopy=False, states=[states.FAIL])),
        feasible=sum(1 for t in comp if is_feasible(t)),
        pareto=[trial_record(t, numbers) for t in front],
        skipped_predicted=skipped,
        audited=audited,
        audit_correct=audit_ok,
        seconds=time.perf_counter() - t_start,
        interrupted=interrupted,
        run_trials=run_trials,
        setup_s=setup_s,
        measure_s=measure_s,
        proxy_s=proxy_s,
    )
