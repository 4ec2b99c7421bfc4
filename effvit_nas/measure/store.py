"""The measurement store: every throughput figure ever taken, so none is taken twice.

A SQLAlchemy database (SQLite file by default, any PostgreSQL URL for many workers; the same
database can hold the Optuna study). Rows are keyed by (config hash, device fingerprint id,
protocol key); storing again under a key replaces the row (``fresh`` in
:func:`effvit_nas.measure.actor.measure_configs`). The schema is created on first use and
versioned in ``effvit_schema``; a database written by an incompatible version is refused
rather than misread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, create_engine, func, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from effvit_nas.errors import UserError
from effvit_nas.measure.settings import Measurement
from effvit_nas.runtime import root_cause

SCHEMA_VERSION = 1
DEFAULT_STORAGE = "sqlite:///effvit-nas.db"


def default_storage() -> str:
    """``$EFFVIT_NAS_STORAGE`` or a SQLite file ``effvit-nas.db`` in the working directory."""
    return os.environ.get("EFFVIT_NAS_STORAGE", DEFAULT_STORAGE)


class StorageError(UserError):
    """The storage URL is malformed, unreachable, or holds an incompatible schema."""


def is_storage_failure(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (disk full, file read-only, server gone), also
    when Optuna or a Ray task wraps it: such an error is never the candidate's fault."""
    from optuna.exceptions import StorageInternalError

    return isinstance(root_cause(error), (SQLAlchemyError, StorageInternalError))


@contextlib.contextmanager
def storage_failures_stop(url: str) -> Iterator[None]:
    """Turn a database failure inside the block into :func:`storage_error` for ``url``."""
    try:
        yield
    except Exception as e:
        if not is_storage_failure(e):
            raise
        raise storage_error(e, url) from None


def storage_error(error: BaseException, url: str | None = None) -> StorageError:
    """One line for a database failure: ``url`` (password hidden) and the database's own reason.
    Transactions that failed rolled back, so whatever was stored before stays, and the same
    command resumes once the database is writable again."""
    where = f"storage {_shown(url)}" if url else "the database"
    return StorageError(
        f"{where} failed while writing: {_database_reason(error)}; what was stored before is kept: "
        "free disk space or make the database writable, then run the same command again to resume"
    )


def _database_reason(error: BaseException) -> str:
    """The driver's own message (``disk I/O error``, ``attempt to write a readonly database``)."""
    seen: BaseException | None = root_cause(error)
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if orig is not None:
            return str(orig).strip().splitlines()[0]
        seen = seen.__cause__ or seen.__context__
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return repr(url)


class _Base(DeclarativeBase):
    pass


class _Meta(_Base):
    __tablename__ = "effvit_schema"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _MeasurementRow(_Base):
    __tablename__ = "effvit_measurements"
    __table_args__ = (UniqueConstraint("config_hash", "device_id", "protocol_key", name="uq_measurement_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    config_hash: Mapped[str] = mapped_column(String(32), index=True)
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    protocol_key: Mapped[str] = mapped_column(String(32))
    throughput: Mapped[float] = mapped_column(Float)  # images/s, median
    q1: Mapped[float] = mapped_column(Float)
    q3: Mapped[float] = mapped_column(Float)
    cv: Mapped[float] = mapped_column(Float)
    iterations: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    # added after schema v1 was first written: nullable, and added to old tables on open
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    windows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disturbed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    settings_json: Mapped[str] = mapped_column(Text)
    device_json: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def open_engine(url: str):
    """A SQLAlchemy engine for ``url`` that has answered once; StorageError otherwise."""
    try:
        engine = create_engine(url, pool_pre_ping=True)
        with engine.connect():
            pass
    except (ArgumentError, NoSuchModuleError) as e:
        raise StorageError(f"invalid storage URL {_shown(url)}: {str(e).splitlines()[0]}") from None
    except (OperationalError, SQLAlchemyError) as e:
        reason = str(getattr(e, "orig", e) or e).strip().splitlines()
        raise StorageError(f"cannot open storage {_shown(url)}: {reason[0] if reason else type(e).__name__}") from None
    return engine


class MeasurementStore:
    """Throughput measurements keyed by (config hash, device id, protocol key).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///effvit-nas.db`` (default) or
            ``postgresql+psycopg://user:pw@host/db``.
    """

    def __init__(self, url: str | None = None):
        self.url = url or default_storage()
        self.engine = open_engine(self.url)
        _Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        with Session(self.engine) as s:
            row = s.get(_Meta, "measurements_schema")
            if row is None:
                s.add(_Meta(key="measurements_schema", value=str(SCHEMA_VERSION)))
                s.commit()
            elif row.value != str(SCHEMA_VERSION):
                raise StorageError(f"storage {self.url!r} holds measurement schema v{row.value}; this effvit-nas reads v{SCHEMA_VERSION}")

    def get(self, config_hash: str, device_id: str, protocol_key: str) -> Measurement | None:
        with Session(self.engine) as s:
            row = s.scalars(_by_key(config_hash, device_id, protocol_key)).first()
            return None if row is None else _to_measurement(row)

    def put(self, m: Measurement, protocol_key: str) -> None:
        """Store ``m``, replacing an earlier measurement under the same key."""
        values: dict[str, Any] = dict(
            {k: getattr(m, k) for k in _SCALARS},
            **{k: _finite_or_none(getattr(m, k)) for k in _WINDOW_STATS},
            settings_json=json.dumps(m.settings, sort_keys=True),
            device_json=json.dumps(m.device, sort_keys=True),
            config_json=json.dumps(m.config, sort_keys=True),
            measured_at=datetime.now(UTC),
        )
        with Session(self.engine) as s, s.begin():
            row = s.scalars(_by_key(m.config_hash, m.device["id"], protocol_key)).first()
            if row is None:
                s.add(_MeasurementRow(config_hash=m.config_hash, device_id=m.device["id"], protocol_key=protocol_key, **values))
            else:
                for k, v in values.items():
                    setattr(row, k, v)

    def all(self) -> list[tuple[str, str, Measurement]]:
        """Every stored measurement as (device id, protocol key, measurement), oldest first."""
        with Session(self.engine) as s:
            rows = s.scalars(select(_MeasurementRow).order_by(_MeasurementRow.measured_at, _MeasurementRow.id))
            return [(r.device_id, r.protocol_key, _to_measurement(r)) for r in rows]

    def count(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(_MeasurementRow)) or 0


# Fields stored as plain columns under the same name in Measurement and the table.
_SCALARS = ("throughput", "q1", "q3", "cv", "iterations", "batch", "seconds", "note")
_WINDOW_STATS = ("ci_low", "ci_high", "windows", "disturbed")  # NULL in rows from before windows


def _add_missing_columns(engine) -> None:
    """Add the nullable window-statistics columns to a table written before they existed, so
    such a database keeps working (its old rows read back with NaN / 0)."""
    from sqlalchemy import inspect, text

    have = {c["name"] for c in inspect(engine).get_columns(_MeasurementRow.__tablename__)}
    for name in (n for n in _WINDOW_STATS if n not in have):
        kind = "INTEGER" if name in ("windows", "disturbed") else "FLOAT"
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {_MeasurementRow.__tablename__} ADD COLUMN {name} {kind}"))
        except SQLAlchemyError:  # another process opening the same store added it first
            if name not in {c["name"] for c in inspect(engine).get_columns(_MeasurementRow.__tablename__)}:
                raise


def _by_key(config_hash: str, device_id: str, protocol_key: str):
    return select(_MeasurementRow).where(
        _MeasurementRow.config_hash == config_hash,
        _MeasurementRow.device_id == device_id,
        _MeasurementRow.protocol_key == protocol_key,
    )


def _finite_or_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _to_measurement(row: _MeasurementRow) -> Measurement:
    return Measurement(
        config_hash=row.config_hash,
        **{k: getattr(row, k) for k in _SCALARS},
        ci_low=math.nan if row.ci_low is None else row.ci_low,
        ci_high=math.nan if row.ci_high is None else row.ci_high,
        windows=row.windows or 0,
        disturbed=row.disturbed or 0,
        settings=json.loads(row.settings_json),
        device=json.loads(row.device_json),
        config=json.loads(row.config_json),
        cached=True,
    )
