"""Journal files (``journal:///FILE.log``) as storages: opened only when they hold a journal,
a torn last record (a crash or a full disk mid-append) repaired first."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import optuna

from ...errors import UserError

_log = logging.getLogger(__name__)


def open_journal(url: str) -> optuna.storages.BaseStorage:
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
