"""Reading finished (or running) studies: lookup, what a study is about, its trials as rows.

Everything here only reads Optuna's storage (and the measurement store beside it), so it works
on a study another process is still writing, and on the same database optuna-dashboard reads.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from effvit_nas.errors import UserError
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.runtime import quiet_optuna
from effvit_nas.trials.records import TrialRecord, trial_record
from effvit_nas.arch.space import SearchSpace, load_space
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.measure.store import MeasurementStore
from effvit_nas.measure.store import optuna_storage

if TYPE_CHECKING:
    import optuna


CSV_COLUMNS = (
    "number",
    "state",
    "hash",
    "params",
    "macs",
    "throughput",
    "accuracy",
    "proxy",
    "feasible",
    "pareto",
    "trained_top1",
    "note",
    "config",
)


def load_study(name: str, storage: str):
    """The existing study ``name`` in ``storage``; a one-line UserError listing the studies
    there when it is missing."""
    import optuna  # lazy: Optuna costs a second to import


    rdb = optuna_storage(storage, existing=True)
    with quiet_optuna():
        try:
            return optuna.load_study(study_name=name, storage=rdb)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
            raise UserError(f"no study {name!r} in {storage} (studies: {', '.join(names) or 'none'})") from None


@dataclass(frozen=True)
class StudyInfo:
    """What a study searched: stored by the search as the study's ``effvit`` attribute."""

    name: str
    device: str
    budget: float  # img/s
    space: str
    proxy: str
    data: dict[str, Any]
    train: dict[str, Any]
    bench: dict[str, Any]
    created: float | None  # Unix time
    budget_spec: str | None = None  # e.g. "1xM2" for a budget relative to a preset
    budget_reference: float | None = None  # that preset's (or the anchor's) throughput the study used, img/s
    anchor: str | None = None  # the preset an absolute budget's candidates were paired with (search --anchor)
    space_def: dict[str, Any] | None = None  # the space's choices (None in studies stored before them)

    @classmethod
    def of(cls, study: optuna.Study) -> StudyInfo:
        ident = study.user_attrs.get("effvit")
        if not ident:
            raise UserError(f"study {study.study_name!r} was not made by `effvit-nas search` (no effvit attributes)")
        return cls(
            name=study.study_name,
            device=ident["device"],
            budget=float(ident["budget"]),
            space=ident["space"],
            proxy=ident["proxy"],
            data=ident["data"],
            train=ident["train"],
            bench=ident["bench"],
            created=study.user_attrs.get("created"),
            budget_spec=ident.get("budget_spec"),
            budget_reference=ident.get("budget_reference"),
            anchor=ident.get("anchor"),
            space_def=ident.get("space_def"),
        )

    def search_space(self):
        """The space searched: from the stored choices, so a moved or deleted YAML file does
        not matter; older studies load their stored path."""

        return SearchSpace.from_dict(self.space_def, source=self.space) if self.space_def else load_space(self.space)

    def bench_settings(self):
        return BenchSettings(**self.bench)

    def protocol(self) -> str:
        """The measurement protocol in words, e.g. ``trace, batch 16, 1 thread, fp32``."""
        b = self.bench
        return f"{b['backend']}, batch {b['batch']}, {b['threads']} thread{'s' if b['threads'] != 1 else ''}, {b['precision']}"


def study_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of ``study`` as a row, Pareto membership included."""
    numbers = {t.number for t in pareto_trials(study)}
    trained = study.user_attrs.get("trained", {})
    return [trial_record(t, numbers, trained) for t in study.get_trials(deepcopy=False)]


def records_csv(records: list[dict[str, Any]]) -> str:
    """CSV of trial rows; the config is one JSON cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({**r, "config": json.dumps(r["config"], separators=(",", ":")) if r.get("config") else ""})
    return buf.getvalue()


def list_studies(storage: str) -> list[dict[str, Any]]:
    """One row per study in ``storage``: trials, feasible, Pareto size, device, budget, created."""
    import optuna  # lazy: Optuna costs a second to import


    rdb = optuna_storage(storage, existing=True)
    rows = []
    with quiet_optuna():
        summaries = optuna.get_all_study_summaries(rdb, include_best_trial=False)
    for summary in summaries:
        with quiet_optuna():
            study = optuna.load_study(study_name=summary.study_name, storage=rdb)
        complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        ident = study.user_attrs.get("effvit") or {}
        created = study.user_attrs.get("created")
        if created is None and summary.datetime_start is not None:
            created = summary.datetime_start.timestamp()
        rows.append(
            {
                "study": summary.study_name,
                "trials": len(complete),
                "all_trials": summary.n_trials,
                "feasible": sum(TrialRecord.of(t).feasible for t in complete),
                "pareto": len(pareto_trials(study)),
                "device": ident.get("device"),
                "budget": ident.get("budget"),
                "proxy": ident.get("proxy"),
                "created": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds") if created else None,
            }
        )
    return rows


def device_description(study: optuna.Study, info: StudyInfo, storage: str) -> dict[str, Any] | None:
    """The fingerprint of the device the study's throughputs were measured on, from the
    measurement store (None when no measured trial is there)."""

    store = MeasurementStore(storage)
    key = info.bench_settings().key()
    for t in study.get_trials(deepcopy=False):
        r = TrialRecord.of(t)
        if r.measured and r.device_id and r.config_hash:
            m = store.get(r.config_hash, r.device_id, key)
            if m is not None:
                return m.device
    return None
