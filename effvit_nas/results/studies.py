"""Reading finished (or running) studies: lookup, what a study is about, its trials as rows.

Everything here only reads Optuna's storage (and the measurement store beside it), so it works
on a study another process is still writing, and on the same database optuna-dashboard reads.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from effvit_nas.errors import UserError
from effvit_nas.trials.pareto import pareto_trials
from effvit_nas.runtime import quiet_optuna
from effvit_nas.trials.records import StudyTarget, TrialRecord, figure_cells, study_targets, target_columns, trial_record
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
    targets: tuple[StudyTarget, ...] = ()  # every target, the first the one the keys above describe

    def __post_init__(self) -> None:
        if not self.targets:  # made by hand from the old keys: their one target
            old = {"device": self.device, "budget": self.budget, "bench": self.bench, "budget_spec": self.budget_spec,
                   "budget_reference": self.budget_reference}  # fmt: skip
            object.__setattr__(self, "targets", study_targets(old))

    @property
    def several(self) -> bool:
        """Whether the study has more than one target."""
        return len(self.targets) > 1

    @property
    def target(self) -> StudyTarget:
        """The first target (the one the study's old keys describe)."""
        return self.targets[0]

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
            targets=study_targets(ident),
        )

    def search_space(self):
        """The space searched: from the stored choices, so a moved or deleted YAML file does
        not matter; older studies load their stored path."""

        return SearchSpace.from_dict(self.space_def, source=self.space) if self.space_def else load_space(self.space)

    def bench_settings(self):
        return BenchSettings.from_stored(self.bench)

    def protocol(self) -> str:
        """The first target's measurement protocol in words, e.g. ``trace, batch 16, 1 thread, fp32``."""
        return self.target.protocol()

    def budget_text(self) -> str:
        """Every target's budget, e.g. ``cpu/trace >= 1,234 img/s, cpu/openvino <= 4 ms p50``
        (one target: without its name)."""
        if not self.several:
            return self.target.budget_text()
        return ", ".join(f"{t.name} {t.budget_text()}" for t in self.targets)


def study_records(study: optuna.Study, storage: str | None = None) -> list[dict[str, Any]]:
    """Every trial of ``study`` as a row, Pareto membership and each target's figure included;
    with ``storage``, a latency target's p90 the trial does not carry is read from the
    measurement store (a one-target latency study keeps it only there)."""
    numbers = {t.number for t in pareto_trials(study)}
    trained = study.user_attrs.get("trained", {})
    targets = study_targets(study.user_attrs["effvit"]) if study.user_attrs.get("effvit") else ()
    rows = [trial_record(t, numbers, trained, targets) for t in study.get_trials(deepcopy=False)]
    if storage is not None and any(t.latency for t in targets):
        _stored_p90(rows, targets, MeasurementStore(storage))
    return rows


def _stored_p90(rows: list[dict[str, Any]], targets: tuple[StudyTarget, ...], store: MeasurementStore) -> None:
    keys = [BenchSettings.from_stored(t.bench).key() if t.latency else None for t in targets]
    for row in rows:
        for f, key in zip(row.get("targets") or (), keys, strict=False):
            if key and f["p90_ms"] is None and f["measured"] and f["device_id"] and row["hash"]:
                m = store.get(row["hash"], f["device_id"], key)
                f["p90_ms"] = m.p90_ms if m is not None and math.isfinite(m.p90_ms) else None


def records_csv(records: list[dict[str, Any]]) -> str:
    """CSV of trial rows; the config is one JSON cell. A one-target throughput study has the
    columns it always had; otherwise each target's figure follows ``throughput`` in its unit."""
    columns = target_columns(records)
    extra = [] if [c[0] for c in columns] in ([], ["img/s"]) else columns
    at = CSV_COLUMNS.index("throughput") + 1
    fields = [*CSV_COLUMNS[:at], *(c[0] for c in extra), *CSV_COLUMNS[at:]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        cfg = json.dumps(r["config"], separators=(",", ":")) if r.get("config") else ""
        w.writerow({**r, **figure_cells(r, extra), "config": cfg})
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
                "targets": [_target_row(t) for t in study_targets(ident)] if ident else [],
                "proxy": ident.get("proxy"),
                "created": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds") if created else None,
            }
        )
    return rows


def _target_row(t: StudyTarget) -> dict[str, Any]:
    """A study's target as `studies --json` lists it: its budget images/s-equivalent and in its unit."""
    shown = {"budget_ms": t.shown(t.budget)} if t.latency else {}
    return {
        "target": t.spec,
        "device": t.device,
        "backend": t.backend,
        "metric": t.metric,
        "budget": t.budget,
        **shown,
        "text": f"{t.name} {t.budget_text()}",
    }


def device_description(study: optuna.Study, info: StudyInfo, storage: str, target: int = 0) -> dict[str, Any] | None:
    """The fingerprint of the device the study's figures on its ``target``-th target were
    measured on, from the measurement store (None when no measured trial is there)."""

    store = MeasurementStore(storage)
    key = BenchSettings.from_stored(info.targets[target].bench).key()
    for t in study.get_trials(deepcopy=False):
        r = TrialRecord.of(t)
        f = r.targets[target] if len(r.targets) > target else None
        if f is not None and f.measured and f.device_id and r.config_hash:
            m = store.get(r.config_hash, f.device_id, key)
            if m is not None:
                return m.device
    return None
