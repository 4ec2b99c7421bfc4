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
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, create_engine, delete, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from effvit_nas.errors import UserError
from effvit_nas.measure.settings import Measurement
from effvit_nas.runtime import quiet_optuna, root_cause

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
    from optuna.exceptions import StorageInternalError  # lazy: Optuna costs a second to import

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
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
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
    p90_ms: Mapped[float | None] = mapped_column(Float, nullable=True)  # latency metric only
    p90_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    p90_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    settings_json: Mapped[str] = mapped_column(Text)
    device_json: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _ClaimRow(_Base):
    """A measurement in progress: drivers sharing a store (several searches on one study) wait
    for it instead of timing the same architecture again."""

    __tablename__ = "effvit_measurement_claims"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # config hash / device id / protocol key
    owner: Mapped[str] = mapped_column(String(128))  # host:pid of the claiming process
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def open_engine(url: str, existing: bool = False):
    """A SQLAlchemy engine for ``url`` that has answered once; StorageError otherwise.
    ``existing``: refuse a SQLite file that is not there yet instead of creating it (for commands
    that only read, where a mistyped path would otherwise leave an empty database behind)."""
    if existing:
        _check_sqlite_file(url)
    try:
        engine = create_engine(url, pool_pre_ping=True)
        with engine.connect() as c:
            if engine.dialect.name == "sqlite":  # connecting reads nothing; this fails on a file that is no database
                c.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except (ArgumentError, NoSuchModuleError, ValueError) as e:  # ValueError: a port that is no number
        raise StorageError(f"invalid storage URL {_shown(url)}: {str(e).splitlines()[0]}") from None
    except ImportError as e:  # a dialect SQLAlchemy knows whose driver is not installed (mysql://, postgresql:// = psycopg2)
        raise StorageError(
            f"storage {_shown(url)} needs the Python module {e.name or str(e)!r}, which is not installed; "
            "effvit-nas ships sqlite:/// and postgresql+psycopg:// (psycopg 3)"
        ) from None
    except (OperationalError, SQLAlchemyError) as e:
        reason = str(getattr(e, "orig", e) or e).strip().splitlines()
        raise StorageError(f"cannot open storage {_shown(url)}: {reason[0] if reason else type(e).__name__}") from None
    return engine


def is_in_memory(url: str) -> bool:
    """Whether ``url`` is a SQLite database that lives only as long as its connection."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    path = parsed.database or ""
    return path in ("", ":memory:") or "mode=memory" in path or parsed.query.get("mode") == "memory"


def require_persistent(url: str) -> None:
    """Refuse an in-memory database for a command whose point is what it stores (a search's
    study, bench's measurements): it would be thrown away when the command ends."""
    if is_in_memory(url):
        raise StorageError(f"storage {_shown(url)} is an in-memory database that is thrown away at exit; name a file (sqlite:///PATH.db)")


def _check_sqlite_file(url: str) -> None:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        return  # open_engine names the bad URL
    path = parsed.database
    if parsed.query.get("uri") in ("true", "1"):  # file:name?mode=...: sqlite parses the URI itself
        return
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).exists():
        raise StorageError(f"storage {_shown(url)}: no database file {path!r} (a search creates it; check the path)")


# pg_advisory_lock's key for creating effvit-nas's and Optuna's tables (any fixed 64-bit number
# no other application on the server uses; this one spells "effvitsc")
_SCHEMA_LOCK_KEY = 0x6566667669747363


@contextlib.contextmanager
def schema_lock(engine) -> Iterator[None]:
    """Inside the block no other process creates tables (or a study) in ``engine``'s PostgreSQL
    database. Several drivers starting on one fresh database (Optuna's distributed pattern)
    would otherwise run CREATE TABLE at once, and PostgreSQL fails all but one of them (a
    unique violation in pg_type) instead of waiting. SQLite's file lock serialises that already."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as c:
        c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        c.commit()  # a session-level lock: held across transactions until unlocked
        try:
            yield
        finally:
            c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            c.commit()


def optuna_storage(url: str, existing: bool = False, **kwargs: Any):
    """Optuna's RDBStorage for ``url`` (``kwargs`` go to it), with a one-line StorageError for a
    bad or unreachable URL and its tables created under :func:`schema_lock`. Every Optuna use
    goes through here rather than passing Optuna the URL, which would create the tables
    unguarded. ``existing``: see :func:`open_engine`."""
    from optuna.storages import RDBStorage  # lazy: Optuna costs a second to import

    engine = open_engine(url, existing)
    with quiet_optuna(), schema_lock(engine):
        return RDBStorage(url, **kwargs)


class MeasurementStore:
    """Throughput measurements keyed by (config hash, device id, protocol key).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///effvit-nas.db`` (default) or
            ``postgresql+psycopg://user:pw@host/db``.
    """

    def __init__(self, url: str | None = None):
        self.url = url or default_storage()
        self.engine = open_engine(self.url)
        with schema_lock(self.engine):
            _Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            with Session(self.engine) as s:
                row = s.get(_Meta, "measurements_schema")
                if row is None:
                    s.add(_Meta(key="measurements_schema", value=str(SCHEMA_VERSION)))
                    s.commit()
                elif row.value != str(SCHEMA_VERSION):
                    raise StorageError(
                        f"storage {self.url!r} holds measurement schema v{row.value}; this effvit-nas reads v{SCHEMA_VERSION}"
                    )

    def check_writable(self) -> None:
        """StorageError now if the store cannot take a row (a read-only file or server), before
        a command spends minutes measuring what it could not keep."""
        try:
            with Session(self.engine) as s:
                s.add(_Meta(key="write_check", value="1"))
                s.flush()
                s.rollback()
        except SQLAlchemyError as e:
            raise storage_error(e, self.url) from None

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
        for attempt in range(2):
            try:
                with Session(self.engine) as s, s.begin():
                    row = s.scalars(_by_key(m.config_hash, m.device["id"], protocol_key)).first()
                    if row is None:
                        s.add(_MeasurementRow(config_hash=m.config_hash, device_id=m.device["id"], protocol_key=protocol_key, **values))
                    else:
                        for k, v in values.items():
                            setattr(row, k, v)
                return
            except IntegrityError:
                # another driver stored the same key between our read and our insert: the
                # row exists now, so the second attempt replaces it
                if attempt:
                    raise

    def claim(self, config_hash: str, device_id: str, protocol_key: str) -> bool:
        """Whether this process now holds the claim to measure the key (and :meth:`put` its
        figure), so other drivers drawing the same architecture wait for that figure instead of
        timing it again. False while another live process holds it; a claim of a dead process on
        this host, or older than :data:`CLAIM_STALE_S`, is taken over. Drop it with :meth:`release`."""
        return self._claim(f"{config_hash}/{device_id}/{protocol_key}")

    def release(self, config_hash: str, device_id: str, protocol_key: str) -> None:
        """Drop this process's claim on the key (nothing if it holds none)."""
        key = f"{config_hash}/{device_id}/{protocol_key}"
        with Session(self.engine) as s, s.begin():
            s.execute(delete(_ClaimRow).where(_ClaimRow.key == key, _ClaimRow.owner == _owner()))

    def _claim(self, key: str) -> bool:
        """Whether this process now holds the claim on ``key`` (a stale one is taken over)."""
        now = datetime.now(UTC)
        try:
            with Session(self.engine) as s, s.begin():
                row = s.get(_ClaimRow, key)
                if row is not None and not _stale(row, now):
                    return False
                if row is not None:
                    s.delete(row)
                    s.flush()
                s.add(_ClaimRow(key=key, owner=_owner(), claimed_at=now))
            return True
        except IntegrityError:  # claimed by another process between our read and our insert
            return False

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
_WINDOW_STATS = ("ci_low", "ci_high", "windows", "disturbed", "p90_ms", "p90_low", "p90_high")  # NULL in rows from before them


def _add_missing_columns(engine) -> None:
    """Add the nullable window-statistics (and latency) columns to a table written before they existed, so
    such a database keeps working (its old rows read back with NaN / 0)."""
    have = {c["name"] for c in inspect(engine).get_columns(_MeasurementRow.__tablename__)}
    for name in (n for n in _WINDOW_STATS if n not in have):
        kind = "INTEGER" if name in ("windows", "disturbed") else "FLOAT"
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {_MeasurementRow.__tablename__} ADD COLUMN {name} {kind}"))
        except SQLAlchemyError:  # another process opening the same store added it first
            if name not in {c["name"] for c in inspect(engine).get_columns(_MeasurementRow.__tablename__)}:
                raise


# A measurement takes seconds to minutes (behind other processes' timings on the device lock);
# a claim this old belongs to a process on another host that died
CLAIM_STALE_S = 900.0


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _stale(row: _ClaimRow, now: datetime) -> bool:
    host, _, pid = row.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True
    claimed = row.claimed_at if row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=UTC)  # SQLite drops the zone
    return (now - claimed).total_seconds() > CLAIM_STALE_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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
        p90_ms=math.nan if row.p90_ms is None else row.p90_ms,
        p90_low=math.nan if row.p90_low is None else row.p90_low,
        p90_high=math.nan if row.p90_high is None else row.p90_high,
        settings=json.loads(row.settings_json),
        device=json.loads(row.device_json),
        config=json.loads(row.config_json),
        cached=True,
        finished=_epoch_s(row.measured_at),
    )


def _epoch_s(at: datetime) -> float:
    # SQLite hands the stored UTC time back without its zone
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
