"""SQLite files as storages: every transaction one locked step (`BEGIN IMMEDIATE`), which waits
for the write lock as long as another process holds it, and the clock liveness watches
heartbeats by, which stands still meanwhile."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from sqlalchemy import event

from ...errors import UserError
from .._optuna.rdb import rdb_of
from .._optuna.schema import VERSION_TABLE, sqlite_tables
from .failures import storage_failure
from .locks import LOCK_TRY_SECONDS, LockWait

COMMIT_WAIT_SECONDS = 120  # SQLite's wait, at commit, for processes still reading


def check_optuna_file(path: Path) -> None:
    """Refuse to write Optuna's tables into an SQLite file that holds something else."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        tables = sqlite_tables(path)
    except sqlite3.DatabaseError as e:
        raise UserError(storage_failure(e, str(path))) from None
    if tables and VERSION_TABLE not in tables:
        raise UserError(f"{path}: an SQLite file that is not an Optuna storage; refusing to "
                        f"write into it")


def liveness_clock(storage: optuna.storages.BaseStorage) -> Callable[[], float]:
    """The clock heartbeats are watched by: monotonic, standing still on SQLite while this
    process waits for the write lock (:class:`LockWait`)."""
    rdb = rdb_of(storage)
    return rdb.lock_wait.clock if isinstance(rdb, SQLiteStorage) else time.monotonic


class SQLiteStorage(RDBStorage):
    """An SQLite file as an Optuna storage, every transaction one locked step (`BEGIN
    IMMEDIATE`), which waits for the write lock as long as another process holds it."""

    def __init__(self, url: str, path: Path, **kwargs: Any):
        super().__init__(url, **kwargs)
        self.lock_wait = LockWait(f"storage {path}", "the write lock")
        serialize_sqlite(self, self._begin_immediate)

    def _begin_immediate(self, connection: sqlite3.Connection) -> None:
        def take() -> bool:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                return False

        connection.execute(f"PRAGMA busy_timeout = {int(LOCK_TRY_SECONDS * 1000)}")
        try:
            self.lock_wait.until(take)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {COMMIT_WAIT_SECONDS * 1000}")


def serialize_sqlite(storage: RDBStorage, begin: Callable[[Any], None]) -> None:
    """Open every transaction on an SQLite storage with ``begin(sqlite3_connection)``, which
    must run `BEGIN IMMEDIATE`: SQLite ignores `SELECT ... FOR UPDATE`, so Optuna's
    read-check-write in `set_trial_state_values` (claims, failing stale trials) would
    otherwise let two processes both succeed."""
    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN would be deferred

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        begin(connection.connection.driver_connection)

    engine.dispose()  # connections opened before the listeners are dropped
