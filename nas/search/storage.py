"""Study storage: URLs to Optuna storages, and loading a study that must exist.

Claims and failures are compare-and-set on every storage: PostgreSQL locks the row
(`SELECT ... FOR UPDATE`), a journal file orders every write, and SQLite, which ignores
`FOR UPDATE`, runs each transaction as `BEGIN IMMEDIATE` so that Optuna's read-check-write is
one locked step. Passwords in URLs never reach output: :func:`mask_url`.
"""
from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from sqlalchemy import Connection, Engine

from .. import interrupts
from ..errors import UserError
from .optuna_api import backend_of, serialize_sqlite

_log = logging.getLogger(__name__)
MAX_NAME = 200  # characters: a name is also a file name (with suffixes), and a column
NAME_RULE = f"use at most {MAX_NAME} letters, digits, '-', '_' or '.' (not first)"
IDLE_IN_TRANSACTION_SECONDS = 30  # a session idle this long in a writing transaction is ended
LOCK_TRY_SECONDS = 1.0    # one try for SQLite's write lock; interrupts are checked between tries
LOCK_NOTICE_SECONDS = 10.0  # a wait for a lock this long is reported
COMMIT_WAIT_SECONDS = 120  # SQLite's wait, at commit, for processes still reading
LOCK_SUFFIX = ".skipnas-lock"  # a storage file's lock file, beside it


def is_valid_name(name: str) -> bool:
    """Study names are file names: no path separators, no leading dot (no traversal)."""
    return 0 < len(name) <= MAX_NAME and name[0] != "." and \
        all(c.isalnum() or c in "-_." for c in name)


def shown_name(name: str) -> str:
    """``name`` for an error message: cut when long."""
    return repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise UserError(f"study name {shown_name(name)}: {NAME_RULE}")
    return name


def default_storage_url(name: str) -> str:
    """Where study ``name`` lives unless a storage URL is given."""
    return f"sqlite:///studies/{check_name(name)}.db"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for output and logs."""
    if "://" not in url or url.startswith("journal:"):
        return url
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: hide everything between '//' and '@'
        head, _, rest = url.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


def _sqlite_path(url: str) -> Path:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path in ("", ":memory:"):
        raise UserError(f"storage {url!r}: an in-memory database loses every result and cannot "
                        f"be shared by workers; use sqlite:///FILE.db")
    return Path(path)


def _check_optuna_file(path: Path) -> None:
    """Refuse to write Optuna's tables into an SQLite file that holds something else."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with _read_only(path) as db:
            tables = _tables(db)
    except sqlite3.DatabaseError as e:
        raise UserError(storage_failure(e, str(path))) from None
    if tables and "version_info" not in tables:
        raise UserError(f"{path}: an SQLite file that is not an Optuna storage; refusing to "
                        f"write into it")


def _schema_complete(path: Path) -> bool:
    """Whether an SQLite file holds Optuna's whole schema, stamped (every table, the version
    row and the alembic revision Optuna writes last), so that opening it creates nothing.
    Anything else (missing, half made, not a database) is False: the caller then looks again
    under the creation lock."""
    if not path.is_file():
        return False
    try:
        with _read_only(path) as db:
            return set(models.BaseModel.metadata.tables) | {"alembic_version"} <= _tables(db) \
                and all(db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                        for t in ("version_info", "alembic_version"))
    except sqlite3.DatabaseError:
        return False


def _read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """An SQLite file opened read-only, closed after the block (sqlite3's own `with` only
    commits)."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: ``sqlite:///file.db`` (one machine, a few workers),
    ``journal:///file.log`` (many local processes, file-locked), ``postgresql+psycopg://...``
    (many machines), ``grpc://host:port`` (a `skipnas storage-proxy` in front of one, for
    fleets beyond the database's connection limit). Fails with one clear line that never
    shows a password."""
    scheme = url.split(":", 1)[0]
    if scheme == "journal":
        return _open_journal(url)
    if scheme == "grpc":
        from .proxy import open_proxy  # which imports this module
        return open_proxy(url)
    if not scheme.startswith(("sqlite", "postgresql", "mysql")):
        raise UserError(f"bad storage URL {mask_url(url)!r}: expected sqlite:///FILE.db, "
                        f"journal:///FILE.log, postgresql+psycopg://USER:PASS@HOST/DB or "
                        f"grpc://HOST:PORT")
    kwargs: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        file = _sqlite_path(url)
        file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": COMMIT_WAIT_SECONDS}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        # Two processes creating the schema of a fresh SQLite file at once collide, and one
        # that looks while another is creating it sees half a schema: both wait for the lock.
        if scheme.startswith("sqlite"):
            if _schema_complete(file):   # nothing to create: no need to wait for the lock
                return SQLiteStorage(url, file, **kwargs)
            with _file_lock(file):
                _check_optuna_file(file)
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
                        f"{_without_secrets(reason, url)}") from None


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
    from sqlalchemy import event

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


def liveness_clock(storage: optuna.storages.BaseStorage) -> Callable[[], float]:
    """The clock heartbeats are watched by: monotonic, standing still on SQLite while this
    process waits for the write lock (:class:`LockWait`)."""
    backend = backend_of(storage)
    return backend.lock_wait.clock if isinstance(backend, SQLiteStorage) else time.monotonic


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


class LockWait:
    """Waits for a lock that another process holds, as long as it takes (a stopped or hung
    process holds it until it goes on or dies): tries again and again, the interrupt checked
    between tries, one line when a wait passes LOCK_NOTICE_SECONDS and one when it ends.
    Its :meth:`clock` stands still while a thread of this process waits: liveness measures
    heartbeats by it, since no other worker could write its heartbeat meanwhile either."""

    def __init__(self, what: str, lock: str):
        self.what, self.lock = what, lock
        self._guard = threading.Lock()
        self._waiting = 0              # threads of this process waiting now
        self._since = 0.0              # when the first of them began
        self._blocked = 0.0            # seconds waited before, overlapping waits counted once
        self._noticed = False

    def until(self, take: Callable[[], bool]) -> None:
        """Call ``take`` (one bounded try, True when it got the lock) until it succeeds."""
        start = time.monotonic()
        if take():
            return
        self._enter(start)
        try:
            while not take():
                if threading.current_thread() is threading.main_thread():
                    interrupts.check()
                self._notice()
        finally:
            self._leave()

    def clock(self) -> float:
        """Monotonic seconds, less the time this process has waited for the lock."""
        with self._guard:
            now = time.monotonic()
            return now - self._blocked - (now - self._since if self._waiting else 0.0)

    def _enter(self, start: float) -> None:
        with self._guard:
            if not self._waiting:
                self._since = start
            self._waiting += 1

    def _notice(self) -> None:
        with self._guard:
            waited = time.monotonic() - self._since
            if self._noticed or waited < LOCK_NOTICE_SECONDS:
                return
            self._noticed = True
        _log.warning("%s: another process has held %s for %.0f s (a stopped or hung "
                     "process?); waiting for it", self.what, self.lock, waited)

    def _leave(self) -> None:
        with self._guard:
            self._waiting -= 1
            if self._waiting:
                return
            waited = time.monotonic() - self._since
            self._blocked += waited
            noticed, self._noticed = self._noticed, False
        if noticed:
            _log.warning("%s: got %s after %.0f s; going on", self.what, self.lock, waited)


def _open_journal(url: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = url.removeprefix("journal:///")  # as SQLAlchemy: a 4th slash makes it absolute
    if not url.startswith("journal:///") or not path:
        raise UserError(f"bad storage URL {url!r}: use journal:///path/to/file.log")
    Path(path).parent.mkdir(parents=True, exist_ok=True)

    def unreadable(why: object) -> UserError:
        return UserError(f"journal {path}: not a readable Optuna journal ({why}); restore it "
                         f"from a backup, or use another file")

    if Path(path).is_file():
        with open(path, "rb") as f:
            first = f.readline()
        if first and not (_is_json(first) and isinstance(record := json.loads(first), dict)
                          and "op_code" in record):
            raise unreadable("its first line is not a journal record")
    repair_torn_journal(Path(path))
    try:
        return JournalStorage(JournalFileBackend(path))
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise unreadable(e) from None


def repair_torn_journal(path: Path) -> Path | None:
    """Cut a torn last record (a crash or a full disk mid-append leaves a line without its
    newline, and the next append would be glued onto it) off a journal file, under the
    journal's own lock. The whole file is first copied to ``<path>.torn-<time>``; returns that
    backup, or None when the file ends cleanly."""
    from optuna.storages.journal import JournalFileSymlinkLock

    def torn() -> bool:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            return size > 0 and f.seek(size - 1) >= 0 and f.read(1) != b"\n"

    if not path.is_file() or not torn():
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        if not torn():  # it was another process's append in progress
            return None
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copyfile(path, backup)
        whole = _is_json(data[keep:])  # only its newline is missing: keep the record
        with path.open("r+b") as f:
            if whole:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    done = "its newline added" if whole else "cut off"
    _log.warning("journal %s: its last record was torn (%d bytes without an end, from a crash "
                 "or a full disk mid-write); %s, the file backed up to %s",
                 path, len(data) - keep, done, backup)
    return backup


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:  # also UnicodeDecodeError and JSONDecodeError
        return False


def lock_path(path: Path) -> Path:
    """The lock file of the storage file ``path`` (Optuna's journal lock is ``<file>.lock``:
    this one is apart from it)."""
    return path.with_name(f"{path.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes that share a storage file. The lock file lies
    beside the storage (``<file>.skipnas-lock``, kept): every process that can write the
    storage finds the same one, whatever its temporary directory (other users, a systemd
    unit's PrivateTmp, containers sharing the study folder)."""

    def take() -> bool:
        deadline = time.monotonic() + LOCK_TRY_SECONDS
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)

    with open(lock_path(path), "a") as f:
        LockWait(f"storage {path}", "its lock file").until(take)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive(url: str, storage: optuna.storages.BaseStorage, key: str) -> Iterator[None]:
    """One process at a time, across processes, for ``key`` on the storage at ``url``: a file
    lock for SQLite and journal files (the processes of one machine), a PostgreSQL advisory
    lock (every machine). Study creation and enqueueing run under it, so two `study start` of
    one config never queue a slot twice. (MySQL: no lock.) A storage proxy cannot lock:
    queueing through one is refused."""
    scheme = url.split(":", 1)[0]
    if scheme == "grpc":
        raise UserError(f"{url}: a storage proxy cannot lock the study while trials are "
                        f"queued; run `study start`, `confirm` and `fidelity` with the "
                        f"database's own URL (--storage), and workers through the proxy")
    if scheme == "journal":
        with _file_lock(Path(url.removeprefix("journal:///"))):
            yield
    elif scheme.startswith("sqlite"):
        with _file_lock(_sqlite_path(url)):
            yield
    elif scheme.startswith("postgresql") and isinstance(storage, RDBStorage):
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with storage.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({number})")
            conn.commit()  # the lock is the session's; no transaction stays open meanwhile
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({number})")
                conn.commit()
    else:
        yield


def storage_failure(error: BaseException, where: str = "the study's storage") -> str | None:
    """One line for a failure of the storage itself (a full disk, a damaged file, a lost
    server), or None when ``error`` is something else."""
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(error, (optuna.exceptions.StorageInternalError, SQLAlchemyError,
                              sqlite3.Error)):
        return None
    root: BaseException = error
    while (deeper := getattr(root, "orig", None) or root.__cause__) is not None:
        root = deeper
    why = (str(root).strip().splitlines() or [type(root).__name__])[0]
    code = getattr(root, "sqlite_errorcode", 0) & 0xFF  # the primary of an extended code
    if code == sqlite3.SQLITE_FULL:
        return (f"{where} cannot grow: the disk is full ({why}); free some space and run the "
                f"command again (a trial cut off is queued again by the next worker)")
    if code == sqlite3.SQLITE_CORRUPT:
        return (f"{where} is a damaged SQLite file ({why}); restore it from a backup "
                f"(`sqlite3 FILE .recover` saves what is still readable)")
    if code == sqlite3.SQLITE_NOTADB:
        return f"{where} is not an SQLite database ({why})"
    return f"{where} failed ({type(root).__name__}: {why})"


def _without_secrets(text: str, url: str) -> str:
    try:
        from sqlalchemy.engine import make_url
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


def load_study(name: str, storage_url: str, **study_kwargs: Any) -> optuna.Study:
    """An existing study; a clear error (and no new empty database) when it is not there."""
    if storage_url.startswith("sqlite:///"):
        path = _sqlite_path(storage_url)
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
