"""Fitted predictors, kept in the measurement store's database (its own table): one JSON record
per (device fingerprint, protocol key, metric, space), replaced when `profile` fits again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from effvit_nas.measure.store import default_storage, open_engine, schema_lock


class _Base(DeclarativeBase):
    pass


class _PredictorRow(_Base):
    __tablename__ = "effvit_predictors"
    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    protocol_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    space: Mapped[str] = mapped_column(String(128), primary_key=True)
    record_json: Mapped[str] = mapped_column(Text)
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PredictorStore:
    """Predictor records in the database at ``url`` (the measurement store's by default).
    ``existing``: only read a SQLite file that is there (`predict` must not create one)."""

    def __init__(self, url: str | None = None, existing: bool = False):
        self.url = url or default_storage()
        self.engine = open_engine(self.url, existing=existing)
        with schema_lock(self.engine):
            _Base.metadata.create_all(self.engine)

    def put(self, device_id: str, protocol_key: str, metric: str, space: str, record: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(_PredictorRow, (device_id, protocol_key, metric, space))
            values = {"record_json": json.dumps(record, sort_keys=True), "fitted_at": datetime.now(UTC)}
            if row is None:
                s.add(_PredictorRow(device_id=device_id, protocol_key=protocol_key, metric=metric, space=space, **values))
            else:
                for k, v in values.items():
                    setattr(row, k, v)

    def find(self, device_id: str, protocol_key: str, metric: str, space: str | None = None) -> list[dict[str, Any]]:
        """Records for the target (of ``space`` only, when given), the latest fitted first."""
        q = select(_PredictorRow).where(
            _PredictorRow.device_id == device_id, _PredictorRow.protocol_key == protocol_key, _PredictorRow.metric == metric
        )
        if space is not None:
            q = q.where(_PredictorRow.space == space)
        with Session(self.engine) as s:
            return [json.loads(r.record_json) for r in s.scalars(q.order_by(_PredictorRow.fitted_at.desc()))]
