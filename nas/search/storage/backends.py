"""Opening a storage by URL (SQLite and journal files, PostgreSQL, storage proxies) and a study
in it that must exist, live or as a read-only snapshot.

Claims and failures are compare-and-set on every storage: PostgreSQL locks the row
(`SELECT ... FOR UPDATE`), a journal file orders every write, and SQLite, which ignores
`FOR UPDATE`, runs each transaction as `BEGIN IMMEDIATE` so that Optuna's read-check-write is
one locked step (:mod:`.sqlite`). Passwords in URLs never reach output (:mod:`.urls`).
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any

import optuna
from optuna.storages import RDBStorage
from sqlalchemy import Connection, Engine, event

from ...errors import UserError
from .._optuna.api import check_optuna
from .._optuna.schema import schema_complete
from .._optuna.snapshot import snapshot_of
from .journal import open_journal
from .locks import file_lock
from .proxy import open_proxy
from .sqlite import COMMIT_WAIT_SECONDS, SQLiteStorage, check_optuna_file
from .urls import mask_url, sqlite_path, without_secrets

IDLE_IN_TRANSACTION_SECONDS = 30  # a session idle this long in a writing transaction is ended


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: ``sqlite:///file.db`` (one machine, a few workers),
    ``journal:///file.log`` (many local processes, file-locked), ``postgresql+psycopg://...``
    (many machines), ``grpc://host:port`` (a `skipnas storage-proxy` in front of one, for
    fleets beyond the database's connection limit). Fails with one clear line that never
    shows a password; refuses an Optuna other than the tested one."""
    check_optuna()
    scheme = url.split(":", 1)[0]
    if scheme == "journal":
        return open_journal(url)
    if scheme == "grpc":
        return open_proxy(url)
    if not scheme.startswith(("sqlite", "postgresql", "mysql")):
        raise UserError(f"bad storage URL {mask_url(url)!r}: expected sqlite:///FILE.db, "
                        f"journal:///FILE.log, postgresql+psycopg://USER:PASS@HOST/DB or "
                        f"grpc://HOST:PORT")
    kwargs: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        file = sqlite_path(url)
        file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": COMMIT_WAIT_SECONDS}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        # Two processes creating the schema of a fresh SQLite file at once collide, and one
        # that looks while another is creating it sees half a schema: both wait for the lock.
        if scheme.startswith("sqlite"):
            if schema_complete(file):   # nothing to create: no need to wait for the lock
                return SQLiteStorage(url, file, **kwargs)
            with file_lock(file):
                check_optuna_file(file)
                return SQLiteStorage(url, file, **kwargs)
        storage = RDBStorage(url, **kwargs)
        if scheme.startswith("postgresql"):
            _limit_idle_writes(storage.engine)
        return storage
    except UserError:
        raise
    except Exception as e:  # SQLAlchemy/driver errors vary by backend
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot open storage {mask_url(url)!r}: "
                        f"{without_secrets(reason, url)}") from None


# Statements that may write or lock rows (or take advisory locks): all but plain reads.
_READ = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_WRITE_OR_LOCK = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|SHARE)\b|advisory", re.IGNORECASE)
_IDLE_LIMIT_SET = "skipnas_idle_limit_set"  # in a connection's info: set in this transaction


def writes_or_locks(statement: str) -> bool:
    """Whether an SQL statement may write or lock: anything but a plain SELECT."""
    return not _READ.match(statement) or bool(_WRITE_OR_LOCK.search(statement))


def _limit_idle_writes(engine: Engine) -> None:
    """Have PostgreSQL end a session that sits idle for IDLE_IN_TRANSACTION_SECONDS inside a
    transaction that writes or locks: a worker paused there would hold its row locks and block
    every other worker's claim or failure of its trial. Set per transaction (`SET LOCAL`, at
    its first such statement) and not on the session, so a long read, which locks no row,
    may work between its statements as long as it needs."""
    @event.listens_for(engine, "begin")
    @event.listens_for(engine, "rollback_savepoint")  # it undoes a SET LOCAL made within
    def _unset(connection: Connection, *_: Any) -> None:
        connection.info.pop(_IDLE_LIMIT_SET, None)

    @event.listens_for(engine, "before_cursor_execute")
    def _limit(connection: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if _IDLE_LIMIT_SET not in connection.info and writes_or_locks(statement):
            cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = "
                           f"{int(IDLE_IN_TRANSACTION_SECONDS * 1000)}")
            connection.info[_IDLE_LIMIT_SET] = True


def load_study(name: str, storage_url: str, **study_kwargs: Any) -> optuna.Study:
    """An existing study; a clear error (and no new empty database) when it is not there."""
    if storage_url.startswith("sqlite:///"):
        path = sqlite_path(storage_url)
        if not path.is_file():
            near = _did_you_mean(path.stem, [p.stem for p in path.parent.glob("*.db")])
            raise UserError(f"no study {name!r}: storage file {path} does not exist{near}")
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage, **study_kwargs)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        held = f" (it holds: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})" \
            if names else " (it is empty)"
        raise UserError(f"no study {name!r} in {mask_url(storage_url)}{held}"
                        f"{_did_you_mean(name, names)}; create it with `skipnas study start "
                        f"CONFIG`") from None


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_snapshot(name: str, storage_url: str, params: bool = True,
                  keys: Collection[str] | None = None) -> optuna.Study:
    """The stored study ``name`` as a read-only snapshot, read in one pass (clear errors as
    :func:`load_study`; ``params``, ``keys``: what its trials carry, see `snapshot_of`)."""
    return snapshot_of(load_study(name, storage_url), params=params, keys=keys)


def read_study(name: str, storage_url: str) -> optuna.Study:
    """The stored study ``name`` as analyses, reports and exports read it: a read-only snapshot
    read in one pass, its trials without params (clear errors as :func:`load_study`)."""
    return load_snapshot(name, storage_url, params=False)
