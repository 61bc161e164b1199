"""llmbo's storage backends under the contract suite, plus checks of SQLStorage itself.

Every backend-generic test lives in :class:`llmbo.testing.storage.StorageContract`; the
classes below run it against a SQLite file, a private in-memory SQLite database and, when
``LLMBO_TEST_POSTGRES_URL`` names a scratch database (e.g.
``postgresql+psycopg://postgres@localhost/llmbo_test``), PostgreSQL. The tests only touch
studies they create, but the schema-version test briefly edits the version row: never point
the variable at a database in use.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmbo.errors import StudyError
from llmbo.storage import SCHEMA_VERSION, BaseStorage, SQLStorage, get_storage
from llmbo.testing.storage import NewStudy, StorageContract

POSTGRES_URL = os.environ.get("LLMBO_TEST_POSTGRES_URL")


class SQLContract(StorageContract):
    """The contract, plus what SQLStorage promises about its database on top of it."""

    def make_url(self, tmp_path: Path) -> str:
        raise NotImplementedError

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        return SQLStorage(self.make_url(tmp_path))

    def open_readonly(self, storage: BaseStorage) -> BaseStorage | None:
        return get_storage(storage, readonly=True)

    def test_unique_active_candidate_enforced_by_database(
        self, storage: SQLStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        storage.reserve(sid, ["a"])
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        insert = sa.text(
            "INSERT INTO llmbo_trials"
            " (study_id, number, candidate_id, active_key, state, created_at)"
            " VALUES (:s, :n, 'a', :k, :st, :t)"
        )
        with pytest.raises(sa.exc.IntegrityError), storage.engine.begin() as conn:
            conn.execute(insert, {"s": sid, "n": 5, "k": "a", "st": "PENDING", "t": now})
        with storage.engine.begin() as conn:  # failed trials (NULL key) may repeat
            conn.execute(insert, {"s": sid, "n": 6, "k": None, "st": "FAILED", "t": now})
            conn.execute(insert, {"s": sid, "n": 7, "k": None, "st": "FAILED", "t": now})

    def test_schema_version_mismatch(self, tmp_path: Path) -> None:
        storage_url = self.make_url(tmp_path)
        SQLStorage(storage_url)  # creates the schema
        engine = sa.create_engine(storage_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE llmbo_schema SET version = 999"))
            with pytest.raises(
                StudyError, match=rf"version \[999\].*supports version {SCHEMA_VERSION}"
            ):
                SQLStorage(storage_url)
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE llmbo_schema SET version = :v"), {"v": SCHEMA_VERSION})
            engine.dispose()
        SQLStorage(storage_url)  # opens again once the version matches


class TestSQLiteFile(SQLContract):
    def make_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'study.db'}"


class TestPostgres(SQLContract):
    def make_url(self, tmp_path: Path) -> str:
        if not POSTGRES_URL:
            pytest.skip("set LLMBO_TEST_POSTGRES_URL to run the storage suite on PostgreSQL")
        return POSTGRES_URL


class TestSQLiteMemory(StorageContract):
    """``sqlite://``: a private database of one process, with no read-only opening."""

    supports_processes = False

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        return SQLStorage("sqlite://")


# ---------------------------------------------------------------------------------------
# SQLite specifics
# ---------------------------------------------------------------------------------------


def test_get_storage_paths(tmp_path: Any) -> None:
    st_path = get_storage(tmp_path / "a.db")
    assert isinstance(st_path, SQLStorage) and st_path.url.startswith("sqlite:///")
    assert get_storage(st_path) is st_path
    assert get_storage(str(tmp_path / "a.db")).study_names() == []
    with pytest.raises(StudyError, match="does not exist"):
        get_storage(tmp_path / "missing-dir" / "a.db")
    with pytest.raises(StudyError, match="not a valid SQLAlchemy URL"):
        SQLStorage("::nonsense::")
    mem = get_storage("sqlite://")
    mem.create_study("m", space={}, config={}, seed=0, direction="maximize")
    assert mem.study_names() == ["m"]


def test_sqlite_pragmas(tmp_path: Any) -> None:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'p.db'}")
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_tables_without_version_row_refused(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    SQLStorage(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE llmbo_schema"))
    engine.dispose()
    with pytest.raises(StudyError, match="unknown schema"):
        SQLStorage(url)
