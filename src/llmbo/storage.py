"""Durable study storage: studies, trials and their states in one SQL database.

A *study* is one optimisation campaign over a finite pool of candidates (string ids). A
*trial* is one attempt at measuring one candidate. Storage knows nothing about search: it
only creates, reads and moves trials between the states of :class:`TrialState`, each change
in one database transaction, so several processes (or machines, with PostgreSQL) can share a
study safely.

Storage is addressed by a SQLAlchemy URL (``sqlite:///runs.db``,
``postgresql+psycopg://user@host/db``) or a bare file path (SQLite); see :func:`get_storage`.

Rules
-----
* **One live trial per candidate.** A study never holds two trials that are not ``FAILED``
  for the same candidate. The database enforces it (``UNIQUE(study_id, active_key)`` where
  ``active_key`` is the candidate id, or ``NULL`` once the trial failed), so racing
  processes cannot break it; :meth:`BaseStorage.reserve` raises
  :class:`CandidateTakenError` and writes nothing when any requested id is taken.
* **Pending suggestions.** A suggestion handed out but never told stays ``PENDING`` and keeps
  its candidate taken. To offer such candidates again call
  :meth:`BaseStorage.release_pending`: each ``PENDING`` trial becomes ``FAILED`` with the
  error ``"released"``.
* **Leases.** A ``RUNNING`` trial carries a lease that its worker extends with
  :meth:`BaseStorage.heartbeat`. :meth:`BaseStorage.expire_stale` fails every ``RUNNING``
  trial whose lease has passed (error ``"lease expired ..."``), freeing its candidate. A
  ``RUNNING`` trial whose lease passed but that was not yet expired can still be completed.
* **Late results.** :meth:`BaseStorage.complete` on a trial that failed because its lease
  expired or because it was released is *accepted* (the trial becomes ``COMPLETE``) when its
  candidate has not been reserved again meanwhile; otherwise it is rejected with a
  :class:`~llmbo.errors.TrialStateError` naming the newer trial. A trial failed explicitly
  with :meth:`BaseStorage.fail` cannot be completed; store a new measurement with
  :meth:`BaseStorage.record` instead.
* **Idempotent tells.** Completing a ``COMPLETE`` trial with the same value returns it
  unchanged; a different value raises :class:`~llmbo.errors.TrialStateError`.
  :meth:`BaseStorage.record_many` stores a whole batch of measurements in one transaction:
  all of them, or (on a conflict, an error or a crash) none.
* **Read-only opening.** ``SQLStorage(url, readonly=True)`` never writes: no tables are
  created, a SQLite file is opened with ``mode=ro`` (``immutable=1`` where even its WAL side
  files cannot be created) and every write method raises :class:`~llmbo.errors.StudyError`.
* **Bad files.** A file that is not a SQLite database, a SQLite database of another
  application, a damaged file and a malformed URL raise
  :class:`~llmbo.errors.StudyFileError` naming the file (never a password), and such a file
  is left unchanged.
"""

from __future__ import annotations

import abc
import enum
import json
import logging
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool, StaticPool

from llmbo._validate import redact_passwords
from llmbo.errors import (
    InputError,
    ObjectiveValueError,
    StudyError,
    StudyFileError,
    TrialStateError,
)

__all__ = [
    "SCHEMA_VERSION",
    "BaseStorage",
    "CandidateTakenError",
    "SQLStorage",
    "StudyRecord",
    "TrialRecord",
    "TrialState",
    "get_storage",
    "is_sqlite_file",
]

logger = logging.getLogger("llmbo.storage")

#: Version of the database layout written by this llmbo. Bump it with a migration.
SCHEMA_VERSION = 1

Direction = Literal["maximize", "minimize"]
_DIRECTIONS = ("maximize", "minimize")
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Words of the SQLite errors that mean the file itself is damaged (SQLITE_CORRUPT/NOTADB).
_DAMAGE_MARKERS = (
    "malformed",
    "not a database",
    "file is encrypted",
    "disk image",
    "could not decode",  # text that is not UTF-8: bytes overwritten in place
)
# Words of the SQLite errors that mean the file or its folder cannot be written.
_READONLY_MARKERS = ("readonly database", "read-only", "unable to open database file")
_CHUNK = 500  # ids per IN (...) query; stays under every backend's bound-parameter limit
_URL_EXAMPLES = "e.g. 'runs.db', 'sqlite:///runs.db' or 'postgresql+psycopg://user@host/db'"

# Why a trial failed; decides whether a late result is accepted (see module docstring).
_FAIL_ERROR = "error"
_FAIL_LEASE = "lease_expired"
_FAIL_RELEASED = "released"
_LATE_OK = (_FAIL_LEASE, _FAIL_RELEASED)


class CandidateTakenError(StudyError):
    """Some requested candidates already have a trial that is not ``FAILED``.

    Attributes:
        study_id: The study the reservation was for.
        candidate_ids: The taken ids, sorted.
    """

    def __init__(self, study_id: int, candidate_ids: Iterable[str]) -> None:
        self.study_id = study_id
        self.candidate_ids = sorted(candidate_ids)
        shown = ", ".join(repr(c) for c in self.candidate_ids[:20])
        more = f" and {len(self.candidate_ids) - 20} more" if len(self.candidate_ids) > 20 else ""
        super().__init__(
            f"Candidate(s) {shown}{more} of study {study_id} already have a pending, running "
            "or complete trial; nothing was reserved. Reserve other candidates (see "
            "taken_candidates()), or fail/release the existing trials first."
        )


class TrialState(enum.Enum):
    """Where a trial is in its life."""

    #: Suggested (handed out), awaiting a measurement.
    PENDING = "PENDING"
    #: Claimed by a worker that keeps its lease alive with heartbeats.
    RUNNING = "RUNNING"
    #: Measured; ``value`` is set.
    COMPLETE = "COMPLETE"
    #: Given up (error, expired lease, or released); the candidate is free again.
    FAILED = "FAILED"

    def is_active(self) -> bool:
        """Whether a trial in this state keeps its candidate taken."""
        return self is not TrialState.FAILED


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored. ``space`` and ``config`` are the JSON dicts given at creation."""

    study_id: int
    name: str
    space: dict[str, Any] = field(hash=False)
    config: dict[str, Any] = field(hash=False)
    seed: int
    direction: Direction
    schema_version: int
    created_at: datetime


@dataclass(frozen=True)
class TrialRecord:
    """A trial as stored. Timestamps are timezone-aware UTC; ``number`` counts from 0."""

    trial_id: int
    study_id: int
    number: int
    candidate_id: str
    state: TrialState
    value: float | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    lease_expires_at: datetime | None
    worker: str | None
    error: str | None


class BaseStorage(abc.ABC):
    """The narrow contract every storage backend implements (no search logic here).

    See the module docstring for the rules on pending suggestions, leases and late results.
    """

    # -- studies -------------------------------------------------------------------------
    @abc.abstractmethod
    def create_study(
        self,
        name: str,
        *,
        space: dict[str, Any],
        config: dict[str, Any],
        seed: int,
        direction: str,
    ) -> StudyRecord:
        """Create a study; :class:`StudyError` if ``name`` exists."""

    @abc.abstractmethod
    def load_study(self, name: str) -> StudyRecord:
        """Return the study called ``name``; :class:`StudyError` listing names if missing."""

    @abc.abstractmethod
    def study_names(self) -> list[str]:
        """Names of all studies, sorted."""

    @abc.abstractmethod
    def delete_study(self, name: str) -> None:
        """Delete a study with its trials and attributes."""

    @abc.abstractmethod
    def discard_study(self, study_id: int) -> bool:
        """Delete a study only if it has no trials at all, in one transaction.

        Returns ``True`` if it was deleted (with its attributes), ``False`` if it holds
        trials or does not exist (then nothing changes). Safe clean-up of a study just
        created by a call that then failed: a study someone has used is never deleted.
        """

    # -- trials --------------------------------------------------------------------------
    @abc.abstractmethod
    def reserve(
        self,
        study_id: int,
        candidate_ids: Sequence[str],
        *,
        state: TrialState = TrialState.PENDING,
        worker: str | None = None,
        lease_seconds: float | None = None,
    ) -> list[TrialRecord]:
        """Atomically create one ``PENDING`` (or ``RUNNING``) trial per candidate.

        Raises :class:`CandidateTakenError` (and writes nothing) if any candidate already
        has a trial that is not ``FAILED``.
        """

    @abc.abstractmethod
    def taken_candidates(self, study_id: int) -> set[str]:
        """Ids of candidates with a trial that is not ``FAILED``."""

    @abc.abstractmethod
    def complete(self, trial_id: int, value: float) -> TrialRecord:
        """Store the measured ``value`` of a trial (idempotent for an equal value)."""

    @abc.abstractmethod
    def record(self, study_id: int, candidate_id: str, value: float) -> TrialRecord:
        """Store a measurement of a candidate, completing its open trial if it has one."""

    @abc.abstractmethod
    def record_many(self, study_id: int, items: Sequence[tuple[str, float]]) -> list[TrialRecord]:
        """:meth:`record` each ``(candidate_id, value)`` pair, all in one transaction.

        Either every item is stored or none is: a conflicting value
        (:class:`~llmbo.errors.TrialStateError`) anywhere, a bad value or a crash stores
        nothing. An id given twice with the same value is stored once; with different
        values the call raises :class:`~llmbo.errors.InputError`. Returns one record per
        item, in order.
        """

    @abc.abstractmethod
    def fail(self, trial_id: int, error: str) -> TrialRecord:
        """Mark a ``PENDING``/``RUNNING`` trial ``FAILED`` with an error message."""

    @abc.abstractmethod
    def fail_many(self, trial_ids: Sequence[int], error: str) -> list[TrialRecord]:
        """:meth:`fail` for several trials in one transaction: all of them, or (when one is
        ``COMPLETE`` or unknown) none, with :class:`~llmbo.errors.TrialStateError`."""

    @abc.abstractmethod
    def start(self, trial_id: int, worker: str, lease_seconds: float) -> TrialRecord:
        """Move a ``PENDING`` trial to ``RUNNING`` under ``worker`` with a lease."""

    @abc.abstractmethod
    def heartbeat(self, trial_ids: Sequence[int], lease_seconds: float) -> list[TrialRecord]:
        """Extend the leases of the ``RUNNING`` trials among ``trial_ids``."""

    @abc.abstractmethod
    def expire_stale(self, study_id: int, now: datetime | None = None) -> list[TrialRecord]:
        """Fail every ``RUNNING`` trial whose lease ended before ``now``."""

    @abc.abstractmethod
    def release_pending(self, study_id: int) -> list[TrialRecord]:
        """Fail every ``PENDING`` trial with error ``"released"`` so it can be re-offered."""

    @abc.abstractmethod
    def get_trial(self, trial_id: int) -> TrialRecord:
        """Return one trial; :class:`StudyError` if it does not exist."""

    @abc.abstractmethod
    def trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[TrialRecord]:
        """Trials of a study (optionally only in ``states``), ordered by ``number``."""

    # -- attributes ----------------------------------------------------------------------
    @abc.abstractmethod
    def set_attr(self, study_id: int, key: str, json_value: Any) -> None:
        """Store a small JSON-serialisable value under ``key`` (replacing any old one)."""

    @abc.abstractmethod
    def get_attrs(self, study_id: int) -> dict[str, Any]:
        """All attributes of a study."""


# ---------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise InputError(f"Timestamp {value!r} has no timezone; pass an aware UTC datetime.")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class _Base(DeclarativeBase):
    pass


class _SchemaRow(_Base):
    __tablename__ = "llmbo_schema"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class _StudyRow(_Base):
    __tablename__ = "llmbo_studies"

    study_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(512), unique=True, nullable=False)
    space_json: Mapped[str] = mapped_column(sa.Text, nullable=False)
    config_json: Mapped[str] = mapped_column(sa.Text, nullable=False)
    seed: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    direction: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    schema_version: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime, nullable=False)


class _TrialRow(_Base):
    __tablename__ = "llmbo_trials"
    __table_args__ = (
        sa.UniqueConstraint("study_id", "number", name="uq_llmbo_trials_number"),
        # The "one live trial per candidate" rule: active_key is NULL once FAILED, and
        # NULLs never collide in a UNIQUE constraint (SQLite and PostgreSQL alike).
        sa.UniqueConstraint("study_id", "active_key", name="uq_llmbo_trials_active"),
        sa.Index("ix_llmbo_trials_candidate", "study_id", "candidate_id"),
        sa.Index("ix_llmbo_trials_state", "study_id", "state"),
    )

    trial_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(
        sa.ForeignKey("llmbo_studies.study_id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    candidate_id: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    active_key: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    value: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(_UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(_UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(_UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    fail_kind: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)


class _AttrRow(_Base):
    __tablename__ = "llmbo_study_attrs"

    study_id: Mapped[int] = mapped_column(
        sa.ForeignKey("llmbo_studies.study_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    value_json: Mapped[str] = mapped_column(sa.Text, nullable=False)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _check_value(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ObjectiveValueError(
            f"Objective value {value!r} is not a number; pass a finite float."
        ) from exc
    if not math.isfinite(out):
        raise ObjectiveValueError(
            f"Objective value {value!r} is not finite; report a failed measurement with "
            "fail(trial_id, error) instead."
        )
    return out


def _measurement_pairs(
    items: Sequence[tuple[str, float]],
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """``record_many()``'s items as checked ``(id, value)`` pairs, and each id's value in
    first-seen order; :class:`InputError` for a malformed item or an id given two values."""
    if isinstance(items, (str, bytes)):
        raise InputError(
            f"items={items!r} is a single string; pass a list of (candidate_id, value) pairs."
        )
    pairs: list[tuple[str, float]] = []
    wanted: dict[str, float] = {}  # first-seen order
    for item in items:
        try:
            cid, raw = item
        except (TypeError, ValueError):
            raise InputError(
                f"record_many() item {item!r} is not a (candidate_id, value) pair; pass a "
                "list of (id, value) tuples."
            ) from None
        cid, value = str(cid), _check_value(raw)
        if cid in wanted and wanted[cid] != value:
            raise InputError(
                f"Candidate {cid!r} appears twice in one record_many() call with "
                f"different values ({wanted[cid]!r} and {value!r}); nothing was recorded. "
                "Give one value per candidate."
            )
        wanted.setdefault(cid, value)
        pairs.append((cid, value))
    return pairs, wanted


def _refuse_other_values(
    study_id: int, active: dict[str, _TrialRow], wanted: dict[str, float]
) -> None:
    """:class:`TrialStateError` if a candidate already has another measured value."""
    conflicts = [
        (cid, row)
        for cid, row in active.items()
        if row.state == TrialState.COMPLETE.value and row.value != wanted[cid]
    ]
    if conflicts:
        shown = "; ".join(
            f"{cid!r} has value {row.value!r} (trial {row.trial_id}), given {wanted[cid]!r}"
            for cid, row in conflicts[:5]
        )
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        raise TrialStateError(
            f"{len(conflicts)} candidate(s) of study {study_id} already have another "
            f"value: {shown}{more}; nothing was recorded. Fail those trials first if "
            "the old measurements were wrong, or leave them out."
        )


def _check_lease(lease_seconds: float | None, *, allow_none: bool) -> float | None:
    if lease_seconds is None:
        if allow_none:
            return None
        raise InputError("lease_seconds is required; pass a positive number of seconds.")
    lease = float(lease_seconds)
    if not math.isfinite(lease) or lease <= 0:
        raise InputError(f"lease_seconds={lease_seconds!r} must be a positive, finite number.")
    return lease


def _dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{what} is not JSON-serialisable ({exc}); store plain dicts, lists, strings, "
            "finite numbers, booleans or None."
        ) from exc


def _trial_record(row: _TrialRow) -> TrialRecord:
    return TrialRecord(
        trial_id=row.trial_id,
        study_id=row.study_id,
        number=row.number,
        candidate_id=row.candidate_id,
        state=TrialState(row.state),
        value=row.value,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        lease_expires_at=row.lease_expires_at,
        worker=row.worker,
        error=row.error,
    )


def _study_record(row: _StudyRow) -> StudyRecord:
    return StudyRecord(
        study_id=row.study_id,
        name=row.name,
        space=json.loads(row.space_json),
        config=json.loads(row.config_json),
        seed=row.seed,
        direction=row.direction,  # type: ignore[arg-type]
        schema_version=row.schema_version,
        created_at=row.created_at,
    )


def _redact(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


#: First bytes of a SQLite write-ahead log (two byte orders) and of a rollback journal.
_SQLITE_SIDE_MAGICS = (
    b"\x37\x7f\x06\x82",
    b"\x37\x7f\x06\x83",
    b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7",
)


def is_sqlite_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a SQLite database or one of its side files (WAL, journal),
    judged by its first bytes; ``False`` if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head.startswith((_SQLITE_MAGIC, *_SQLITE_SIDE_MAGICS))


def _db_message(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc)


def _is_damage(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    message = _db_message(exc).lower()
    return any(m in message for m in _DAMAGE_MARKERS)


def _is_unwritable(exc: BaseException) -> bool:
    message = _db_message(exc).lower()
    return any(m in message for m in _READONLY_MARKERS)


def _readonly_uri(path: Path, *, immutable: bool) -> str:
    return path.as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")


def _no_writer_possible(path: Path) -> bool:
    """Whether no process can be writing the SQLite file ``path`` right now.

    True when its folder denies writes (by its permission bits, which root ignores, or to
    this process) so no writer can create the WAL side files, and no ``-wal`` file exists
    (one may hold data not yet copied into the file). Such a file is read ``immutable=1``,
    which leaves no side files behind; a ``mode=ro`` reader of a WAL database creates them
    wherever it can.
    """
    if Path(f"{path}-wal").exists():
        return False
    try:
        bits = path.parent.stat().st_mode & 0o222
    except OSError:
        return False
    return not bits or not os.access(path.parent, os.W_OK)


def _sqlite_connect_ro(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, timeout=_SQLITE_BUSY_TIMEOUT_MS / 1000)


def _sqlite_tables(uri: str) -> list[str]:
    """Names of the tables in a SQLite file, read over a read-only ``uri`` connection."""
    conn = _sqlite_connect_ro(uri)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    finally:
        conn.close()
    return sorted(str(r[0]) for r in rows)


_LLMBO_TABLES = frozenset(_Base.metadata.tables)


def _install_sqlite_hooks(engine: Engine, *, memory: bool, readonly: bool) -> None:
    """WAL, busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for write transactions.

    pysqlite's own transaction handling is switched off (``isolation_level = None``) so the
    ``begin`` hook decides how each transaction starts; ``BEGIN IMMEDIATE`` takes the write
    lock up front, so concurrent writers wait (up to the busy timeout) instead of failing
    with "database is locked" when upgrading a read lock. A ``readonly`` engine leaves the
    journal mode alone (switching to WAL writes the file), sets ``query_only`` and only
    ever starts plain ``BEGIN`` transactions.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            if readonly:
                cur.execute("PRAGMA query_only = ON")
            elif not memory:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        plain = readonly or conn.get_execution_options().get("llmbo_readonly", False)
        conn.exec_driver_sql("BEGIN" if plain else "BEGIN IMMEDIATE")


# ---------------------------------------------------------------------------------------
# SQL implementation
# ---------------------------------------------------------------------------------------


def _check_sqlite_file(
    path: Path, *, readonly: bool, damaged: Callable[[BaseException], StudyFileError]
) -> bool:
    """Refuse a file that is not an llmbo study before SQLite touches it.

    Returns whether the file can only be read ``immutable=1`` (even ``mode=ro`` cannot
    open it: its WAL side files cannot be created).
    """
    if not path.parent.is_dir():
        raise StudyFileError(
            f"Cannot open study file {str(path)!r}: folder {str(path.parent)!r} does not "
            "exist; create it first or check the path."
        )
    if path.is_dir():
        raise StudyFileError(
            f"{str(path)!r} is a folder, not a study file; give the study file that llmbo "
            "suggest created, or a new file name."
        )
    if not path.exists():
        if readonly:
            raise StudyFileError(
                f"Study file {str(path)!r} does not exist; check the path (a read-only "
                "open never creates a study)."
            )
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StudyFileError(
            f"Study file {str(path)!r} cannot be read ({exc}); check its permissions."
        ) from exc
    if not head and not readonly:
        return False  # an empty file is a new study file
    if head and head != _SQLITE_MAGIC:
        raise StudyFileError(
            f"{str(path)!r} is not an llmbo study: it is not a SQLite database (give the "
            "study file that llmbo suggest created, or a new file name)."
        )
    tables: list[str] = []
    only_immutable = False
    for immutable in (_no_writer_possible(path), True):
        try:
            tables = _sqlite_tables(_readonly_uri(path, immutable=immutable))
            break
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise damaged(exc) from exc
            if immutable or not _is_unwritable(exc):
                raise StudyFileError(
                    f"Study file {str(path)!r} cannot be opened ({exc}); check that it "
                    "is a study file and that no other program holds it locked."
                ) from exc
            # The WAL side files cannot be created (read-only medium or folder).
            logger.info("Reading %s as immutable: opening it read-only failed (%s)", path, exc)
            wal = Path(f"{path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                logger.warning(
                    "%s has a -wal file of %d bytes with changes not yet copied into the "
                    "study file, which SQLite cannot read without write access to the "
                    "folder; what is shown may miss the latest changes. Copy the study "
                    "and its -wal file to a writable folder to see them.",
                    path,
                    wal.stat().st_size,
                )
            only_immutable = True
    if not readonly and tables and not _LLMBO_TABLES.intersection(tables):
        raise StudyFileError(
            f"{str(path)!r} holds another application's tables, not an llmbo study "
            f"({', '.join(tables[:10])}); use a new file."
        )
    return only_immutable


class _SQLConnection:
    """The connection side of :class:`SQLStorage`: its URL, the engine (created lazily, and
    anew in a forked child), the checks of a SQLite file before SQLite touches it, the
    schema, and transactions whose database errors name the study file."""

    def __init__(
        self,
        url: str | sa.URL,
        *,
        readonly: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._url = self._parse_url(url)
        self._readonly = bool(readonly)
        self._engine_kwargs = dict(engine_kwargs or {})
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._get_engine()  # fail early on a bad or incompatible database

    @staticmethod
    def _parse_url(url: str | sa.URL) -> sa.URL:
        if isinstance(url, sa.URL):
            return url
        text = str(url)
        try:
            return make_url(text)
        except (ArgumentError, ValueError, TypeError) as exc:
            reason = ""
            port = re.search(r"int\(\) with base 10: '(.*)'$", str(exc))
            if port:
                reason = f" (port {port.group(1)!r} is not a number)"
            shown = redact_passwords(repr(text))
            # `from None`: the parser's own message would repeat the password.
            raise StudyFileError(
                redact_passwords(
                    f"Storage URL {shown} is not a valid SQLAlchemy URL{reason}; give a study "
                    f"file path or a URL, {_URL_EXAMPLES}."
                )
            ) from None

    # -- engine management ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL, with any password hidden."""
        return _redact(self._url)

    @property
    def readonly(self) -> bool:
        """Whether this storage was opened read-only (every write method then raises)."""
        return self._readonly

    def __repr__(self) -> str:
        extra = ", readonly=True" if self._readonly else ""
        return f"SQLStorage({self.url!r}{extra})"

    def __getstate__(self) -> dict[str, Any]:
        if self._is_memory():
            raise StudyError(
                "An in-memory SQLite storage cannot be shared with another process; use a "
                "file, e.g. SQLStorage('sqlite:///runs.db')."
            )
        return {
            "url": self._url,
            "readonly": self._readonly,
            "engine_kwargs": self._engine_kwargs,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._url = state["url"]
        self._readonly = state.get("readonly", False)
        self._engine_kwargs = state["engine_kwargs"]
        self._engine = None
        self._pid = None
        self._lock = threading.Lock()

    def _is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    def _is_memory(self) -> bool:
        return self._is_sqlite() and self._url.database in (None, "", ":memory:")

    def _sqlite_path(self) -> Path | None:
        """The file of a SQLite URL; ``None`` for memory or a ``file:`` URI (``uri=true``)."""
        if not self._is_sqlite() or self._is_memory():
            return None
        if str(self._url.query.get("uri", "")).lower() in ("true", "1"):
            return None
        return Path(self._url.database or "").expanduser().resolve()

    def _where(self) -> str:
        """How messages name this storage: the study file, or the URL without password."""
        path = self._sqlite_path()
        return f"Study file {str(path)!r}" if path is not None else f"Storage {self.url!r}"

    def _require_writable(self, what: str) -> None:
        if self._readonly:
            raise StudyError(
                f"{self._where()} was opened read-only; {what} would change it. Open it "
                "without readonly=True to change it."
            )

    def _damaged(self, exc: BaseException) -> StudyFileError:
        kind = "SQLite" if self._is_sqlite() else self._url.get_backend_name()
        return StudyFileError(
            f"{self._where()} is damaged ({kind}: {_db_message(exc)}); restore it from a backup."
        )

    def _file_error(self, exc: DatabaseError) -> StudyFileError | None:
        """The :class:`StudyFileError` a database error stands for, if it is about the file."""
        if _is_damage(exc):
            return self._damaged(exc)
        if self._is_sqlite() and not self._readonly and _is_unwritable(exc):
            return StudyFileError(
                f"{self._where()} cannot be written ({_db_message(exc)}); check the "
                "permissions of the file and its folder, or open it read-only "
                "(readonly=True) to read it."
            )
        return None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of this process (created on first use, a new one in a forked
        child), for inspecting the database; write studies through this storage's methods."""
        return self._get_engine()

    def _get_engine(self) -> Engine:
        pid = os.getpid()
        if self._engine is not None and self._pid == pid:
            return self._engine
        with self._lock:
            if self._engine is not None and self._pid != pid:
                # Forked child: never reuse the parent's pooled connections.
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                engine = self._create_engine()
                try:
                    self._init_schema(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self._engine = engine
                self._pid = pid
        return self._engine

    def _create_engine(self) -> Engine:
        kwargs = dict(self._engine_kwargs)
        url = self._url
        if self._is_sqlite():
            memory = self._is_memory()
            path = self._sqlite_path()
            if path is not None:
                only_immutable = _check_sqlite_file(
                    path, readonly=self._readonly, damaged=self._damaged
                )
                if self._readonly:

                    def connect(path: Path = path) -> sqlite3.Connection:
                        immutable = only_immutable or _no_writer_possible(path)
                        return _sqlite_connect_ro(_readonly_uri(path, immutable=immutable))

                    kwargs.setdefault("creator", connect)
            elif self._readonly and not memory:
                url = url.update_query_dict({"mode": "ro"})  # a user-given file: URI
            if memory:
                kwargs.setdefault("poolclass", StaticPool)
                kwargs.setdefault("connect_args", {"check_same_thread": False})
            else:
                kwargs.setdefault("poolclass", NullPool)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            if self._readonly and self._url.get_backend_name() == "postgresql":
                options = dict(kwargs.get("execution_options") or {})
                options.setdefault("postgresql_readonly", True)
                kwargs["execution_options"] = options
        try:
            engine = sa.create_engine(url, **kwargs)
        except NoSuchModuleError:
            raise StudyFileError(
                f"Storage URL {self.url!r} names an unknown database kind "
                f"{self._url.drivername!r}; give a study file path or a URL, {_URL_EXAMPLES}."
            ) from None
        except ImportError as exc:
            raise StudyFileError(
                f"The database driver for {self.url!r} is not installed ({exc}); install it "
                "(e.g. `pip install psycopg[binary]` for postgresql+psycopg)."
            ) from exc
        if self._is_sqlite():
            _install_sqlite_hooks(engine, memory=self._is_memory(), readonly=self._readonly)
        return engine

    def _init_schema(self, engine: Engine, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                with engine.connect() as conn, conn.begin():
                    self._check_or_create_schema(conn)
                return
            except DatabaseError as exc:
                error = self._file_error(exc)
                if error is not None:
                    raise error from exc
                # Another process may be creating the same tables right now; try again.
                retry = isinstance(exc, (OperationalError, IntegrityError, ProgrammingError))
                if not retry or attempt == attempts - 1:
                    raise StudyError(
                        f"Could not open storage {self.url!r}: {exc.orig!r}. Check the URL "
                        "and that the database server is reachable."
                    ) from exc
                logger.debug("Retrying schema setup of %s after %r", self.url, exc)

    def _check_or_create_schema(self, conn: sa.Connection) -> None:
        insp = sa.inspect(conn)
        tables = set(insp.get_table_names())
        if _SchemaRow.__tablename__ in tables:
            found = conn.execute(sa.select(_SchemaRow.version)).scalars().all()
            if len(found) > 1 or (found and found[0] != SCHEMA_VERSION):
                raise StudyFileError(
                    f"Storage {self.url!r} has llmbo schema version {found}, but this llmbo "
                    f"supports version {SCHEMA_VERSION} only. Open it with the llmbo version "
                    "that wrote it, or start a new database."
                )
        elif _StudyRow.__tablename__ in tables:
            raise StudyError(
                f"Storage {self.url!r} has llmbo tables but no schema version row (unknown "
                f"schema); this llmbo supports version {SCHEMA_VERSION}. Use a new database."
            )
        if self._readonly:
            missing = sorted(_LLMBO_TABLES - tables)
            if len(missing) == len(_LLMBO_TABLES):
                others = sorted(t for t in tables if not t.startswith("sqlite_"))
                held = f"; it holds {', '.join(others[:10])}" if others else ""
                raise StudyFileError(
                    f"{self._where()} is not an llmbo study (it has no llmbo tables{held}); "
                    "give the study file that llmbo suggest created."
                )
            if missing:
                raise StudyFileError(
                    f"{self._where()} lacks the llmbo table(s) {', '.join(missing)}; open it "
                    "once without readonly=True to complete it, or use another study file."
                )
            return
        _Base.metadata.create_all(conn, checkfirst=True)
        if not conn.execute(sa.select(_SchemaRow.version)).first():
            conn.execute(sa.insert(_SchemaRow).values(id=1, version=SCHEMA_VERSION))
            logger.info("Created llmbo schema version %d in %s", SCHEMA_VERSION, self.url)

    @contextmanager
    def _tx(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction; committed on success, rolled back on any exception.

        Database errors that mean the file is damaged or cannot be written become
        :class:`~llmbo.errors.StudyFileError`; "database is locked" and integrity errors
        pass unchanged.
        """
        if not readonly:
            self._require_writable("writing")
        engine = self._get_engine()
        bind = engine.execution_options(llmbo_readonly=True) if readonly else engine
        try:
            with Session(bind, expire_on_commit=False, autoflush=True) as session, session.begin():
                yield session
        except DatabaseError as exc:
            error = self._file_error(exc)
            if error is None:
                raise
            raise error from exc


class SQLStorage(_SQLConnection, BaseStorage):
    """Storage in any database SQLAlchemy reaches (tested on SQLite and PostgreSQL).

    Args:
        url: A SQLAlchemy URL such as ``"sqlite:///runs.db"`` or
            ``"postgresql+psycopg://user:pw@host/db"``. ``"sqlite://"`` gives a private
            in-memory database (one process only).
        readonly: Open an existing study without ever writing to it (for reports, or a
            file on read-only media): no tables are created, SQLite files are opened with
            ``mode=ro`` and every write method raises :class:`~llmbo.errors.StudyError`.
        engine_kwargs: Extra keyword arguments for :func:`sqlalchemy.create_engine`.

    The engine is created lazily and re-created in a forked child, so a storage object can
    be shared with worker processes (it also pickles, without its engine). On open, the
    tables are created if missing (unless ``readonly``) and the schema version is checked.
    A SQLite file that is not a SQLite database, that holds only another application's
    tables, or that is damaged raises :class:`~llmbo.errors.StudyFileError` and is left
    unchanged.
    """

    # -- lookups inside a transaction ----------------------------------------------------
    def _lock_study(self, s: Session, study_id: int) -> _StudyRow:
        # FOR UPDATE serialises writers of one study on PostgreSQL; SQLite ignores it and
        # relies on BEGIN IMMEDIATE.
        row = s.execute(
            sa.select(_StudyRow).where(_StudyRow.study_id == study_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise StudyError(
                f"No study with id {study_id} in {self.url!r}; load it by name with "
                "load_study(name) to get its id."
            )
        return row

    def _lock_trial(self, s: Session, trial_id: int) -> _TrialRow:
        study_id = s.execute(
            sa.select(_TrialRow.study_id).where(_TrialRow.trial_id == trial_id)
        ).scalar_one_or_none()
        if study_id is None:
            raise StudyError(f"No trial with id {trial_id} in {self.url!r}; check the trial id.")
        self._lock_study(s, study_id)
        return s.execute(
            sa.select(_TrialRow).where(_TrialRow.trial_id == trial_id).with_for_update()
        ).scalar_one()

    def _active_trial(self, s: Session, study_id: int, candidate_id: str) -> _TrialRow | None:
        return s.execute(
            sa.select(_TrialRow).where(
                _TrialRow.study_id == study_id, _TrialRow.active_key == candidate_id
            )
        ).scalar_one_or_none()

    def _next_number(self, s: Session, study_id: int) -> int:
        top = s.execute(
            sa.select(sa.func.max(_TrialRow.number)).where(_TrialRow.study_id == study_id)
        ).scalar_one()
        return 0 if top is None else top + 1

    def _taken(self, s: Session, study_id: int, candidate_ids: Iterable[str] | None) -> set[str]:
        # active_key equals candidate_id whenever it is not NULL.
        query = sa.select(_TrialRow.candidate_id).where(
            _TrialRow.study_id == study_id, _TrialRow.active_key.is_not(None)
        )
        if candidate_ids is None:
            return set(s.execute(query).scalars())
        wanted = list(candidate_ids)
        taken: set[str] = set()
        for i in range(0, len(wanted), _CHUNK):  # stay under bound-parameter limits
            chunk = wanted[i : i + _CHUNK]
            taken.update(s.execute(query.where(_TrialRow.active_key.in_(chunk))).scalars())
        return taken

    def _active_trials(
        self, s: Session, study_id: int, candidate_ids: Sequence[str]
    ) -> dict[str, _TrialRow]:
        """The active trials of ``candidate_ids`` by candidate, locked for update."""
        active: dict[str, _TrialRow] = {}
        for i in range(0, len(candidate_ids), _CHUNK):
            query = sa.select(_TrialRow).where(
                _TrialRow.study_id == study_id,
                _TrialRow.active_key.in_(candidate_ids[i : i + _CHUNK]),
            )
            for found in s.execute(query.with_for_update()).scalars():
                active[found.candidate_id] = found
        return active

    @staticmethod
    def _finish(row: _TrialRow, value: float, now: datetime) -> None:
        row.state = TrialState.COMPLETE.value
        row.value = value
        row.completed_at = now
        row.lease_expires_at = None
        row.active_key = row.candidate_id

    @staticmethod
    def _mark_failed(row: _TrialRow, error: str, kind: str, now: datetime) -> None:
        row.state = TrialState.FAILED.value
        row.error = error
        row.fail_kind = kind
        row.completed_at = now
        row.lease_expires_at = None
        row.active_key = None

    # -- studies -------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        *,
        space: dict[str, Any],
        config: dict[str, Any],
        seed: int,
        direction: str,
    ) -> StudyRecord:
        self._require_writable("create_study()")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"Study name {name!r} is empty; pass a non-empty string.")
        if direction not in _DIRECTIONS:
            raise InputError(
                f"direction={direction!r} is not supported; use 'maximize' or 'minimize'."
            )
        row = _StudyRow(
            name=name,
            space_json=_dumps(space, "The study's space"),
            config_json=_dumps(config, "The study's config"),
            seed=int(seed),
            direction=direction,
            schema_version=SCHEMA_VERSION,
            created_at=_utcnow(),
        )
        try:
            with self._tx() as s:
                exists = s.execute(
                    sa.select(_StudyRow.study_id).where(_StudyRow.name == name)
                ).first()
                if exists:
                    raise StudyError(
                        f"A study named {name!r} already exists in {self.url!r}; load it with "
                        "load_study(name), delete it, or choose another name."
                    )
                s.add(row)
                s.flush()
                record = _study_record(row)
        except IntegrityError as exc:  # lost a race with another process creating `name`
            raise StudyError(
                f"A study named {name!r} already exists in {self.url!r}; load it with "
                "load_study(name), delete it, or choose another name."
            ) from exc
        logger.info("Created study %r (id %d) in %s", name, record.study_id, self.url)
        return record

    def load_study(self, name: str) -> StudyRecord:
        with self._tx(readonly=True) as s:
            row = s.execute(sa.select(_StudyRow).where(_StudyRow.name == name)).scalar_one_or_none()
            if row is not None:
                return _study_record(row)
            names = sorted(s.execute(sa.select(_StudyRow.name)).scalars())
        listed = ", ".join(repr(n) for n in names) if names else "none"
        raise StudyError(
            f"No study named {name!r} in {self.url!r}; existing studies: {listed}. "
            "Create it with create_study(name, ...)."
        )

    def study_names(self) -> list[str]:
        with self._tx(readonly=True) as s:
            return sorted(s.execute(sa.select(_StudyRow.name)).scalars())

    def delete_study(self, name: str) -> None:
        self._require_writable("delete_study()")
        study = self.load_study(name)
        with self._tx() as s:
            self._lock_study(s, study.study_id)
            for table in (_TrialRow, _AttrRow):
                s.execute(sa.delete(table).where(table.study_id == study.study_id))
            s.execute(sa.delete(_StudyRow).where(_StudyRow.study_id == study.study_id))
        logger.info("Deleted study %r from %s", name, self.url)

    def discard_study(self, study_id: int) -> bool:
        self._require_writable("discard_study()")
        with self._tx() as s:
            row = s.execute(
                sa.select(_StudyRow).where(_StudyRow.study_id == study_id).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                return False
            used = s.execute(
                sa.select(_TrialRow.trial_id).where(_TrialRow.study_id == study_id).limit(1)
            ).first()
            if used is not None:
                logger.info("Kept study %r (id %d): it has trials", row.name, study_id)
                return False
            name = row.name
            s.execute(sa.delete(_AttrRow).where(_AttrRow.study_id == study_id))
            s.execute(sa.delete(_StudyRow).where(_StudyRow.study_id == study_id))
        logger.info("Discarded empty study %r (id %d) from %s", name, study_id, self.url)
        return True

    # -- trials --------------------------------------------------------------------------
    def reserve(
        self,
        study_id: int,
        candidate_ids: Sequence[str],
        *,
        state: TrialState = TrialState.PENDING,
        worker: str | None = None,
        lease_seconds: float | None = None,
    ) -> list[TrialRecord]:
        self._require_writable("reserve()")
        ids = [str(c) for c in candidate_ids] if not isinstance(candidate_ids, str) else None
        if ids is None:
            raise InputError(
                f"candidate_ids={candidate_ids!r} is a single string; pass a list of ids."
            )
        repeated = sorted({c for c in ids if ids.count(c) > 1})
        if repeated:
            raise InputError(
                f"Candidate id(s) {repeated} appear more than once in one reservation; pass "
                "each id once."
            )
        state = TrialState(state)
        if state not in (TrialState.PENDING, TrialState.RUNNING):
            raise InputError(
                f"reserve(state={state.name}) is not allowed; new trials start PENDING or "
                "RUNNING (use record() to store a finished measurement)."
            )
        if state is TrialState.PENDING and (worker is not None or lease_seconds is not None):
            raise InputError(
                "worker and lease_seconds only apply to RUNNING trials; pass "
                "state=TrialState.RUNNING or leave them out."
            )
        lease = _check_lease(lease_seconds, allow_none=True)
        if not ids:
            return []
        try:
            with self._tx() as s:
                self._lock_study(s, study_id)
                taken = self._taken(s, study_id, ids)
                if taken:
                    raise CandidateTakenError(study_id, taken)
                now = _utcnow()
                number = self._next_number(s, study_id)
                running = state is TrialState.RUNNING
                rows = [
                    _TrialRow(
                        study_id=study_id,
                        number=number + i,
                        candidate_id=cid,
                        active_key=cid,
                        state=state.value,
                        created_at=now,
                        started_at=now if running else None,
                        lease_expires_at=(
                            now + timedelta(seconds=lease) if running and lease else None
                        ),
                        worker=worker,
                    )
                    for i, cid in enumerate(ids)
                ]
                s.add_all(rows)
                s.flush()
                records = [_trial_record(r) for r in rows]
        except IntegrityError as exc:
            # Only reachable if another writer slipped past the study lock; report it the
            # same way, from a fresh read.
            with self._tx(readonly=True) as s:
                taken = self._taken(s, study_id, ids)
            if taken:
                raise CandidateTakenError(study_id, taken) from exc
            raise StudyError(
                f"Reserving {len(ids)} candidate(s) in study {study_id} failed: {exc.orig!r}. "
                "Retry the reservation."
            ) from exc
        logger.debug("Reserved %d candidate(s) in study %d", len(records), study_id)
        return records

    def taken_candidates(self, study_id: int) -> set[str]:
        with self._tx(readonly=True) as s:
            return self._taken(s, study_id, None)

    def complete(self, trial_id: int, value: float) -> TrialRecord:
        self._require_writable("complete()")
        value = _check_value(value)
        with self._tx() as s:
            row = self._lock_trial(s, trial_id)
            state = TrialState(row.state)
            if state is TrialState.COMPLETE:
                if row.value == value:
                    return _trial_record(row)
                raise TrialStateError(
                    f"Trial {trial_id} (candidate {row.candidate_id!r}) is already COMPLETE "
                    f"with value {row.value!r}; refusing to overwrite it with {value!r}. "
                    "Tell each measurement once, or create a new trial with record()."
                )
            if state is TrialState.FAILED:
                if row.fail_kind not in _LATE_OK:
                    raise TrialStateError(
                        f"Trial {trial_id} (candidate {row.candidate_id!r}) FAILED with error "
                        f"{row.error!r} and cannot be completed with {value!r}; store the new "
                        "measurement with record(study_id, candidate_id, value)."
                    )
                newer = self._active_trial(s, row.study_id, row.candidate_id)
                if newer is not None:
                    raise TrialStateError(
                        f"Late result {value!r} for trial {trial_id} (candidate "
                        f"{row.candidate_id!r}) rejected: the trial failed ({row.error}) and the "
                        f"candidate was reserved again as trial {newer.trial_id} (number "
                        f"{newer.number}, {newer.state}). Complete trial {newer.trial_id} "
                        "instead, or fail it first."
                    )
                logger.info(
                    "Accepting late result for trial %d (%s) after it failed: %s",
                    trial_id,
                    row.candidate_id,
                    row.error,
                )
                row.error = None
                row.fail_kind = None
            self._finish(row, value, _utcnow())
            s.flush()
            return _trial_record(row)

    def record(self, study_id: int, candidate_id: str, value: float) -> TrialRecord:
        self._require_writable("record()")
        return self.record_many(study_id, [(str(candidate_id), _check_value(value))])[0]

    def record_many(self, study_id: int, items: Sequence[tuple[str, float]]) -> list[TrialRecord]:
        self._require_writable("record_many()")
        pairs, wanted = _measurement_pairs(items)
        if not pairs:
            return []
        with self._tx() as s:
            self._lock_study(s, study_id)
            active = self._active_trials(s, study_id, list(wanted))
            _refuse_other_values(study_id, active, wanted)
            now = _utcnow()
            number = self._next_number(s, study_id)
            rows: dict[str, _TrialRow] = {}
            new_rows: list[_TrialRow] = []
            for cid, value in wanted.items():
                row = active.get(cid)
                if row is None:
                    row = _TrialRow(
                        study_id=study_id,
                        number=number + len(new_rows),
                        candidate_id=cid,
                        active_key=cid,
                        state=TrialState.COMPLETE.value,
                        value=value,
                        created_at=now,
                        completed_at=now,
                    )
                    new_rows.append(row)
                elif row.state != TrialState.COMPLETE.value:
                    self._finish(row, value, now)
                rows[cid] = row
            s.add_all(new_rows)
            s.flush()
            records = {cid: _trial_record(row) for cid, row in rows.items()}
        logger.debug(
            "Recorded %d measurement(s) in study %d (%d new trial(s))",
            len(records),
            study_id,
            len(new_rows),
        )
        return [records[cid] for cid, _ in pairs]

    def fail_many(self, trial_ids: Sequence[int], error: str) -> list[TrialRecord]:
        self._require_writable("fail_many()")
        ids = list(dict.fromkeys(int(t) for t in trial_ids))
        if not ids:
            return []
        with self._tx() as s:
            rows: dict[int, _TrialRow] = {}
            for i in range(0, len(ids), _CHUNK):
                query = sa.select(_TrialRow).where(_TrialRow.trial_id.in_(ids[i : i + _CHUNK]))
                rows.update({r.trial_id: r for r in s.execute(query).scalars()})
            missing = [t for t in ids if t not in rows]
            if missing:
                raise StudyError(f"No trial(s) with id {missing} in {self.url!r}; nothing failed.")
            for study_id in sorted({r.study_id for r in rows.values()}):
                self._lock_study(s, study_id)
            for row in rows.values():
                s.refresh(row)  # the state as of the lock
            done = [r for r in rows.values() if r.state == TrialState.COMPLETE.value]
            if done:
                shown = ", ".join(f"{r.trial_id} ({r.candidate_id!r})" for r in done[:10])
                raise TrialStateError(
                    f"Trial(s) {shown} are COMPLETE and cannot be failed; nothing was failed. "
                    "Only PENDING or RUNNING trials can."
                )
            now = _utcnow()
            for row in rows.values():
                if row.state != TrialState.FAILED.value:
                    self._mark_failed(row, str(error), _FAIL_ERROR, now)
            s.flush()
            return [_trial_record(rows[t]) for t in ids]

    def fail(self, trial_id: int, error: str) -> TrialRecord:
        self._require_writable("fail()")
        with self._tx() as s:
            row = self._lock_trial(s, trial_id)
            state = TrialState(row.state)
            if state is TrialState.FAILED:
                return _trial_record(row)
            if state is TrialState.COMPLETE:
                raise TrialStateError(
                    f"Trial {trial_id} (candidate {row.candidate_id!r}) is COMPLETE with value "
                    f"{row.value!r} and cannot be failed; only PENDING or RUNNING trials can."
                )
            self._mark_failed(row, str(error), _FAIL_ERROR, _utcnow())
            s.flush()
            return _trial_record(row)

    def start(self, trial_id: int, worker: str, lease_seconds: float) -> TrialRecord:
        self._require_writable("start()")
        lease = _check_lease(lease_seconds, allow_none=False)
        assert lease is not None
        with self._tx() as s:
            row = self._lock_trial(s, trial_id)
            state = TrialState(row.state)
            now = _utcnow()
            if state is TrialState.RUNNING and row.worker == worker:
                row.lease_expires_at = now + timedelta(seconds=lease)  # repeated start
            elif state is TrialState.PENDING:
                row.state = TrialState.RUNNING.value
                row.worker = worker
                row.started_at = now
                row.lease_expires_at = now + timedelta(seconds=lease)
            else:
                owner = f" by worker {row.worker!r}" if row.worker else ""
                raise TrialStateError(
                    f"Trial {trial_id} (candidate {row.candidate_id!r}) is {state.name}{owner}; "
                    f"worker {worker!r} can only start a PENDING trial."
                )
            s.flush()
            return _trial_record(row)

    def heartbeat(self, trial_ids: Sequence[int], lease_seconds: float) -> list[TrialRecord]:
        """Extend the leases of the ``RUNNING`` trials among ``trial_ids``.

        Returns every given trial's current record; one whose state is no longer
        ``RUNNING`` (its lease expired, or it was finished elsewhere) was not extended and
        its worker should stop.
        """
        self._require_writable("heartbeat()")
        lease = _check_lease(lease_seconds, allow_none=False)
        assert lease is not None
        ids = [int(t) for t in trial_ids]
        if not ids:
            return []
        with self._tx() as s:
            rows = {
                r.trial_id: r
                for r in s.execute(
                    sa.select(_TrialRow).where(_TrialRow.trial_id.in_(ids)).with_for_update()
                ).scalars()
            }
            missing = [t for t in ids if t not in rows]
            if missing:
                raise StudyError(f"No trial(s) with id {missing} in {self.url!r}.")
            expires = _utcnow() + timedelta(seconds=lease)
            for row in rows.values():
                if row.state == TrialState.RUNNING.value:
                    row.lease_expires_at = expires
                else:
                    logger.warning(
                        "Heartbeat for trial %d (%s) ignored: it is %s",
                        row.trial_id,
                        row.candidate_id,
                        row.state,
                    )
            s.flush()
            return [_trial_record(rows[t]) for t in ids]

    def expire_stale(self, study_id: int, now: datetime | None = None) -> list[TrialRecord]:
        self._require_writable("expire_stale()")
        now = _utcnow() if now is None else now
        if now.tzinfo is None:
            raise InputError(f"now={now!r} has no timezone; pass an aware UTC datetime.")
        with self._tx() as s:
            self._lock_study(s, study_id)
            rows = (
                s.execute(
                    sa.select(_TrialRow)
                    .where(
                        _TrialRow.study_id == study_id,
                        _TrialRow.state == TrialState.RUNNING.value,
                        _TrialRow.lease_expires_at.is_not(None),
                        _TrialRow.lease_expires_at < now,
                    )
                    .order_by(_TrialRow.number)
                )
                .scalars()
                .all()
            )
            for row in rows:
                assert row.lease_expires_at is not None
                msg = (
                    f"lease expired at {row.lease_expires_at.isoformat()} "
                    f"(worker {row.worker!r}, checked at {now.isoformat()})"
                )
                self._mark_failed(row, msg, _FAIL_LEASE, now)
            s.flush()
            records = [_trial_record(r) for r in rows]
        if records:
            logger.info(
                "Expired %d stale trial(s) in study %d: %s",
                len(records),
                study_id,
                [r.candidate_id for r in records],
            )
        return records

    def release_pending(self, study_id: int) -> list[TrialRecord]:
        self._require_writable("release_pending()")
        with self._tx() as s:
            self._lock_study(s, study_id)
            rows = (
                s.execute(
                    sa.select(_TrialRow)
                    .where(
                        _TrialRow.study_id == study_id,
                        _TrialRow.state == TrialState.PENDING.value,
                    )
                    .order_by(_TrialRow.number)
                )
                .scalars()
                .all()
            )
            now = _utcnow()
            for row in rows:
                self._mark_failed(row, "released", _FAIL_RELEASED, now)
            s.flush()
            records = [_trial_record(r) for r in rows]
        if records:
            logger.info("Released %d pending trial(s) in study %d", len(records), study_id)
        return records

    def get_trial(self, trial_id: int) -> TrialRecord:
        with self._tx(readonly=True) as s:
            row = s.get(_TrialRow, trial_id)
            if row is None:
                raise StudyError(
                    f"No trial with id {trial_id} in {self.url!r}; check the trial id."
                )
            return _trial_record(row)

    def trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[TrialRecord]:
        query = (
            sa.select(_TrialRow).where(_TrialRow.study_id == study_id).order_by(_TrialRow.number)
        )
        if states is not None:
            query = query.where(_TrialRow.state.in_([TrialState(x).value for x in states]))
        with self._tx(readonly=True) as s:
            return [_trial_record(r) for r in s.execute(query).scalars()]

    # -- attributes ----------------------------------------------------------------------
    def set_attr(self, study_id: int, key: str, json_value: Any) -> None:
        self._require_writable("set_attr()")
        text = _dumps(json_value, f"Attribute {key!r}")
        with self._tx() as s:
            self._lock_study(s, study_id)
            row = s.get(_AttrRow, (study_id, key))
            if row is None:
                s.add(_AttrRow(study_id=study_id, key=key, value_json=text))
            else:
                row.value_json = text

    def get_attrs(self, study_id: int) -> dict[str, Any]:
        with self._tx(readonly=True) as s:
            rows = s.execute(sa.select(_AttrRow).where(_AttrRow.study_id == study_id)).scalars()
            return {r.key: json.loads(r.value_json) for r in rows}


def get_storage(
    url_or_path: str | os.PathLike[str] | BaseStorage, *, readonly: bool = False
) -> BaseStorage:
    """Open storage from a SQLAlchemy URL, a bare file path (SQLite), or pass one through.

    With ``readonly=True`` nothing is ever written (see :class:`SQLStorage`); a writable
    :class:`SQLStorage` passed in is then reopened read-only. A missing file is created as a
    new study file unless ``readonly``; a file that is not an llmbo study raises
    :class:`~llmbo.errors.StudyFileError`.

    >>> get_storage("runs.db")  # doctest: +SKIP
    SQLStorage('sqlite:////abs/path/runs.db')
    """
    if isinstance(url_or_path, BaseStorage):
        if readonly and isinstance(url_or_path, SQLStorage) and not url_or_path.readonly:
            return SQLStorage(
                url_or_path._url, readonly=True, engine_kwargs=url_or_path._engine_kwargs
            )
        return url_or_path
    text = os.fspath(url_or_path)
    if "://" in text:
        return SQLStorage(text, readonly=readonly)
    path = Path(text).expanduser().resolve()
    # URL.create, not f"sqlite:///{path}": a path may contain "?" or "#".
    return SQLStorage(sa.URL.create("sqlite", database=str(path)), readonly=readonly)
