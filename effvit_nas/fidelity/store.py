"""A fidelity study's memory: the Optuna study of that name in the usual storage (SQLite by
default, PostgreSQL for many drivers), holding the study's settings, its architectures and
every result as study attributes written the moment each result exists. Resuming reads them
back, so an interrupted run loses at most the evaluation in flight, and a proxy added later
costs only that proxy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from effvit_nas.errors import UserError
from effvit_nas.measure.settings import with_later_fields
from effvit_nas.measure.store import optuna_storage
from effvit_nas.runtime import quiet_optuna

SETTINGS = "fidelity"  # the study's settings; also marks a study as a fidelity study
ARCHS = "fidelity_archs"  # [{"hash", "config", "throughput"}], in sampling order
BAND = "fidelity_band"  # {"images_per_s", "reference"}: the band's centre, resolved once


@dataclass(frozen=True)
class Result:
    """One stored evaluation: a proxy value (score or top-1) or a reference top-1 in [0, 1]."""

    value: float
    seconds: float
    details: dict[str, Any]


class FidelityStore:
    """Settings, architectures and results of the fidelity study ``name`` in ``storage``."""

    def __init__(self, storage: str, name: str, create: bool = True):
        import optuna  # lazy: Optuna costs a second to import

        rdb = optuna_storage(storage, existing=not create)  # reading a report must not create a database
        with quiet_optuna():
            if not create and name not in {s.study_name for s in optuna.get_all_study_summaries(rdb)}:
                raise UserError(f"no fidelity study {name!r} in {storage}")
            self._study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True)
        self.name, self.storage = name, storage
        self._attrs = dict(self._study.user_attrs)

    def claim(self, settings: dict[str, Any]) -> None:
        """Mark the study as holding results made with ``settings``; a study made with other
        settings is refused (its results would not be comparable)."""
        settings = json.loads(json.dumps(settings))  # as stored: tuples become lists
        have = self._attrs.get(SETTINGS)
        if have is None:
            if any(k.startswith(("proxy:", "reference:")) for k in self._attrs) or self._study.trials:
                raise UserError(f"study {self.name!r} in {self.storage} is not a fidelity study: choose another --study")
            self._set(SETTINGS, settings)
            return
        if isinstance(have.get("bench"), dict):
            have = {**have, "bench": with_later_fields(have["bench"], settings["bench"])}
        if have != settings:
            diff = sorted(k for k in settings.keys() | have.keys() if settings.get(k) != have.get(k))
            raise UserError(f"study {self.name!r} was made with other settings ({', '.join(diff)} differ): choose another --study")

    def archs(self) -> list[dict[str, Any]]:
        return list(self._attrs.get(ARCHS, []))

    def set_archs(self, archs: list[dict[str, Any]]) -> None:
        self._set(ARCHS, archs)

    def band(self) -> dict[str, Any] | None:
        return self._attrs.get(BAND)

    def set_band(self, band: dict[str, Any]) -> None:
        self._set(BAND, band)

    def get(self, kind: str, config_hash: str, key: str) -> Result | None:
        """The stored result of ``kind`` (``proxy`` or ``reference``) ``key`` for an architecture."""
        raw = self._attrs.get(f"{kind}:{config_hash}:{key}")
        return None if raw is None else Result(raw["value"], raw["seconds"], raw.get("details", {}))

    def keys(self, kind: str, config_hash: str) -> list[str]:
        """The keys of every stored ``kind`` result of an architecture (proxy names, seeds)."""
        prefix = f"{kind}:{config_hash}:"
        return sorted(k.removeprefix(prefix) for k in self._attrs if k.startswith(prefix))

    def put(self, kind: str, config_hash: str, key: str, result: Result) -> None:
        self._set(f"{kind}:{config_hash}:{key}", {"value": result.value, "seconds": result.seconds, "details": result.details})

    def _set(self, key: str, value: Any) -> None:
        self._study.set_user_attr(key, value)
        self._attrs[key] = value
