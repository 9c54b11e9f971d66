"""Optuna's schema: its tables, whether an SQLite file holds all of them, and the indexes a
worker's reads add to them."""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

from optuna.storages import BaseStorage
from optuna.storages._rdb import models
from sqlalchemy import MetaData, inspect, text

from .rdb import rdb_of

_log = logging.getLogger(__name__)
# Indexes the worker's reads need on Optuna's tables (created once; Optuna's own schema has
# none on a trial's state, nor on attribute values).
INDEXES = {
    "skipnas_trial_state": "trials (study_id, state, number)",
    "skipnas_pattern_hash": "trial_user_attributes (value_json) WHERE key = 'hash'",
}
VERSION_TABLE = "version_info"  # the table every Optuna storage holds (its schema version)


def tables() -> MetaData:
    """Optuna's tables (SQLAlchemy metadata)."""
    return models.BaseModel.metadata


def ensure_indexes(storage: BaseStorage) -> None:
    """Create :data:`INDEXES` in an RDB storage where they are missing, so that a worker's
    reads (WAITING ids, RUNNING trials, a pattern's trials) do not scan the study. A database
    that refuses them (no rights) is noted: the reads still work, scanning."""
    rdb = rdb_of(storage)
    if rdb is None:
        return
    # Looked up first: PostgreSQL locks the table for `CREATE INDEX IF NOT EXISTS` even when
    # the index is there, which would stall every worker's writes at each start.
    present = {i["name"] for table in ("trials", "trial_user_attributes")
               for i in inspect(rdb.engine).get_indexes(table)}
    for name, on in INDEXES.items():
        if name in present:
            continue
        try:
            with rdb.engine.begin() as db:
                db.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {on}"))
        except Exception as e:  # the driver's error for a read-only or restricted database
            if name not in {i["name"] for i in inspect(rdb.engine).get_indexes(
                    on.split()[0])}:  # not another process's creation in between
                _log.warning("could not create index %s (%s: %s); the workers' reads scan "
                             "the study instead", name, type(e).__name__,
                             str(e).splitlines()[0])


def sqlite_tables(path: Path) -> set[str]:
    """The tables of the SQLite file ``path``, opened read-only (sqlite3.DatabaseError: not a
    database)."""
    with _read_only(path) as db:
        return _tables(db)


def schema_complete(path: Path) -> bool:
    """Whether an SQLite file holds Optuna's whole schema, stamped (every table, the version
    row and the alembic revision Optuna writes last), so that opening it creates nothing.
    Anything else (missing, half made, not a database) is False: the caller then looks again
    under the creation lock."""
    if not path.is_file():
        return False
    try:
        with _read_only(path) as db:
            return set(tables().tables) | {"alembic_version"} <= _tables(db) \
                and all(db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                        for t in (VERSION_TABLE, "alembic_version"))
    except sqlite3.DatabaseError:
        return False


def _read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """An SQLite file opened read-only, closed after the block (sqlite3's own `with` only
    commits)."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
