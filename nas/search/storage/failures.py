"""A failure of the storage itself (a full disk, a damaged file, a lost server) as one line."""
from __future__ import annotations

import sqlite3

import optuna


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
