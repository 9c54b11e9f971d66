"""Study storage: URLs to Optuna storages, and loading a study that must exist."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from ..errors import UserError
from .optuna_api import experimental_ok


def default_storage_url(name: str) -> str:
    """Where study ``name`` lives unless a storage URL is given."""
    return f"sqlite:///studies/{name}.db"


def open_storage(url: str, heartbeat_seconds: int | None = None) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: ``sqlite:///file.db`` (one worker, or a few on one machine),
    ``journal:///file.log`` (many local processes, file-locked, no heartbeat),
    ``postgresql+psycopg://...`` (many machines). Fails with one clear line."""
    scheme = url.split(":", 1)[0]
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = url.removeprefix("journal:///")  # as SQLAlchemy: a 4th slash makes it absolute
        if not url.startswith("journal:///") or not path:
            raise UserError(f"bad storage URL {url!r}: use journal:///path/to/file.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")
            or scheme.startswith("mysql")):
        raise UserError(f"bad storage URL {url!r}: expected sqlite:///FILE.db, journal:///FILE.log "
                        f"or postgresql+psycopg://USER:PASS@HOST/DB")
    kwargs: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Concurrent local workers wait for the file lock instead of "database is locked".
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        with experimental_ok():
            if heartbeat_seconds is not None:
                kwargs.update(heartbeat_interval=heartbeat_seconds,
                              grace_period=3 * heartbeat_seconds,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=3))
            return RDBStorage(url, **kwargs)
    except Exception as e:  # SQLAlchemy/driver errors vary by backend
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot open storage {url!r}: {reason}") from None


def load_study(name: str, storage_url: str, heartbeat_seconds: int | None = None,
               **study_kwargs: Any) -> optuna.Study:
    """An existing study; a clear error (and no new empty database) when it is not there."""
    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"no study {name!r}: storage file {path} does not exist")
    storage = open_storage(storage_url, heartbeat_seconds)
    try:
        return optuna.load_study(study_name=name, storage=storage, **study_kwargs)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"no study {name!r} in {storage_url}"
                        + (f" (it holds: {', '.join(names)})" if names else " (it is empty)")
                        + "; create it with `skipnas study start CONFIG`") from None
