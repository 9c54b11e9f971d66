"""Locks between the processes that share a storage: waiting for one as long as it takes
(:class:`LockWait`), a storage file's lock file, and one process at a time per study
(:func:`exclusive`: queueing slots)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from ... import interrupts
from ...errors import UserError
from .urls import sqlite_path

_log = logging.getLogger(__name__)
LOCK_TRY_SECONDS = 1.0    # one try for SQLite's write lock; interrupts are checked between tries
LOCK_NOTICE_SECONDS = 10.0  # a wait for a lock this long is reported
LOCK_SUFFIX = ".skipnas-lock"  # a storage file's lock file, beside it


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


def lock_path(path: Path) -> Path:
    """The lock file of the storage file ``path`` (Optuna's journal lock is ``<file>.lock``:
    this one is apart from it)."""
    return path.with_name(f"{path.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
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
        with file_lock(Path(url.removeprefix("journal:///"))):
            yield
    elif scheme.startswith("sqlite"):
        with file_lock(sqlite_path(url)):
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
