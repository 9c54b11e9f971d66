"""Every use of Optuna's private API, in one place. tests/test_structure.py pins these calls
to the installed Optuna, so an upgrade that moves them fails there and not in a worker."""
from __future__ import annotations

import contextlib
import json
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

if TYPE_CHECKING:
    import grpc

TESTED_WITH = "5.0"  # the Optuna release these calls were checked against (major.minor)


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage


def backend_of(storage: BaseStorage) -> BaseStorage:
    """The storage itself under Optuna's cache (studies wrap an RDBStorage in one)."""
    return getattr(storage, "_backend", storage)


def trial_id(trial: FrozenTrial) -> int:
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def live_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """The Trial object of a stored trial (Optuna builds them only inside `ask`): for one this
    process claimed, or to attach a dashboard note to any trial."""
    return optuna.Trial(study, trial_id)


# Optuna's retry bookkeeping (as `RetryFailedTrialCallback` writes it): a trial queued again
# names the first trial of its slot and the trials of the slot before it.
FAILED_TRIAL, RETRY_HISTORY = "failed_trial", "retry_history"


def first_of_slot(trial: FrozenTrial) -> int:
    """The number of the first trial of ``trial``'s slot (its own when never retried)."""
    return trial.system_attrs.get(FAILED_TRIAL, trial.number)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the earlier trials of ``trial``'s slot."""
    return list(trial.system_attrs.get(RETRY_HISTORY, []))


def retry_attrs(failed: FrozenTrial) -> dict[str, Any]:
    """The system attrs of the trial that queues ``failed``'s slot again."""
    return {FAILED_TRIAL: first_of_slot(failed), RETRY_HISTORY: [*retry_history(failed),
                                                                 failed.number]}


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """Where optuna-dashboard keeps attached figures (Optuna 5 has no public reader)."""
    return storage_of(study).get_study_system_attrs(study._study_id)


def claim_waiting(study: optuna.Study, waiting: Iterable[int]) -> int | None:
    """Claim one of the WAITING trials ``waiting`` (trial ids): move the first that no other
    process takes first to RUNNING and return its id; None when every one was taken. (Optuna
    has no public "pop a queued trial only" call: `ask` would sample a new one.)"""
    storage = storage_of(study)
    for waiting_id in waiting:
        try:
            if storage.set_trial_state_values(waiting_id, state=TrialState.RUNNING):
                return waiting_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def adopt_trial(study: optuna.Study, trial_id: int) -> None:
    """Make Optuna's cache in front of an RDB storage know a trial this process claimed, as it
    does for a trial this process creates (`create_new_trial`): its `set_trial_param` looks the
    trial up there, and the cache would otherwise learn of it only by reading every unfinished
    trial of the study again."""
    from optuna.storages._cached_storage import _CachedStorage, _StudyInfo

    storage = storage_of(study)
    if not isinstance(storage, _CachedStorage):
        return
    frozen = storage._backend.get_trial(trial_id)
    with storage._lock:
        info = storage._studies.setdefault(study._study_id, _StudyInfo())
        storage._add_trials_to_cache(study._study_id, [frozen])
        # Read again with the unfinished trials on the cache's next read (on PostgreSQL a
        # trial can be queued after a higher-numbered one finished: never re-read otherwise).
        info.unfinished_trial_ids.add(trial_id)


def set_user_attrs(trial: Any, attrs: dict[str, Any]) -> None:
    """Store ``attrs`` as user attrs of a live trial in one transaction on an RDB storage
    (Optuna commits each attr apart: about 6 ms a commit on SQLite, a trial's record has ~20).
    Any other trial (another storage, a test double) gets them one `set_user_attr` at a time."""
    backend = backend_of(trial.storage) if isinstance(trial, optuna.Trial) else None
    if not isinstance(backend, RDBStorage):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    if not attrs:
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    upsert = _UPSERTS.get(backend.engine.name)
    # Unlike Optuna's, an IntegrityError is raised, not ignored: ignoring it would drop every
    # attr of the batch (attrs are upserts here, so none is expected).
    with _create_scoped_session(backend.scoped_session) as session:
        if upsert is None:  # another database: Optuna's own statement, an attr at a time
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial._trial_id, key, value)
        else:  # Optuna's check and its upsert, once for all the attrs
            updatable(backend, session, trial._trial_id)
            a = models.TrialUserAttributeModel
            rows = upsert(a).values([{"trial_id": trial._trial_id, "key": key,
                                      "value_json": json.dumps(value)}
                                     for key, value in attrs.items()])
            session.execute(rows.on_conflict_do_update(
                index_elements=[a.trial_id, a.key],
                set_={"value_json": rows.excluded.value_json}))
    trial._cached_frozen_trial.user_attrs.update(attrs)


# Multi-row upserts (INSERT ... ON CONFLICT DO UPDATE), by SQLAlchemy dialect name (SQLite's
# from 3.24, as Optuna's own upsert).
_UPSERTS: dict[str, Callable[[Any], Any]] = {"postgresql": pg_insert} | (
    {"sqlite": sqlite_insert} if sqlite3.sqlite_version_info >= (3, 24, 0) else {})


def updatable(backend: RDBStorage, session: Any, trial_id: int) -> Any:
    """The trial's row, once Optuna's check that it may still be written has passed."""
    from optuna.storages._rdb import models

    row = models.TrialModel.find_or_raise_by_id(trial_id, session)
    backend.check_trial_is_updatable(trial_id, cast(TrialState, row.state))
    return row


class _ParamsHeld:
    """A trial's storage that holds back `set_trial_param` (everything else passes through)."""

    def __init__(self, storage: BaseStorage):
        self._storage = storage
        self.held: list[tuple[str, float, Any]] = []  # (name, internal value, distribution)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: Any) -> None:
        self.held.append((param_name, param_value_internal, distribution))


@contextlib.contextmanager
def params_in_one_transaction(trial: optuna.Trial) -> Iterator[None]:
    """Inside, the params a live trial suggests on an RDB storage are written together, in one
    transaction, when the block ends (Optuna commits each as it is suggested: about 10 ms a
    commit on SQLite, and a pattern has tens of keys). A block left by an error still writes
    the params suggested before it; one left by an interrupt (KeyboardInterrupt) does not, the
    trial being given back."""
    from optuna.distributions import check_distribution_compatibility, distribution_to_json
    from optuna.storages._cached_storage import _CachedStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    storage = trial.storage
    backend = backend_of(storage)
    if not isinstance(backend, RDBStorage):
        yield
        return
    held = _ParamsHeld(storage)
    trial.storage = held  # type: ignore[assignment]  # Optuna's `_suggest` writes through it

    def write() -> None:
        if not held.held:
            return
        cache = storage if isinstance(storage, _CachedStorage) else None
        # As Optuna's cache writes one param: under its lock, checked against the
        # distribution it knows for the name (else the database's).
        with cache._lock if cache else contextlib.nullcontext():
            known = cache._studies[trial.study._study_id].param_distribution if cache else {}
            with _create_scoped_session(backend.scoped_session) as session, \
                    session.no_autoflush:  # the rows go in at the commit, in one batch
                row = updatable(backend, session, trial._trial_id)
                for name, value, distribution in held.held:
                    # Optuna 5.0's `_set_trial_param_without_commit` for one param (its
                    # checks and its row), the trial's row read once for all.
                    previous = known.get(name)
                    if previous is None:
                        previous = first_distribution(session, row.study_id, name)
                    if previous is not None:
                        check_distribution_compatibility(previous, distribution)
                    session.add(models.TrialParamModel(
                        trial_id=trial._trial_id, param_name=name, param_value=value,
                        distribution_json=distribution_to_json(distribution)))
            for name, _, distribution in held.held:
                known.setdefault(name, distribution)

    try:
        yield
    except Exception as error:   # not an interrupt: that writes nothing
        try:
            write()
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # failed as stale meanwhile: the worker drops the trial, whatever it was
        except Exception as e:  # the block's own error is the one to report
            error.add_note(f"its params were not stored ({type(e).__name__}: {e})")
        raise
    finally:
        trial.storage = storage
    write()


def first_distribution(session: Any, study: int, name: str) -> Any:
    """The distribution of the study's first stored param ``name`` (None: none stored), which
    a new one must be compatible with (as Optuna's `_set_trial_param_without_commit` reads)."""
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models

    first = (session.query(models.TrialParamModel).join(models.TrialModel)
             .filter(models.TrialModel.study_id == study)
             .filter(models.TrialParamModel.param_name == name).first())
    return None if first is None else json_to_distribution(first.distribution_json)


def serialize_sqlite(storage: RDBStorage, begin: Callable[[Any], None]) -> None:
    """Open every transaction on an SQLite storage with ``begin(sqlite3_connection)``, which
    must run `BEGIN IMMEDIATE`: SQLite ignores `SELECT ... FOR UPDATE`, so Optuna's
    read-check-write in `set_trial_state_values` (claims, failing stale trials) would
    otherwise let two processes both succeed."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN would be deferred

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        begin(connection.connection.driver_connection)

    engine.dispose()  # connections opened before the listeners are dropped


def grpc_server(storage: BaseStorage, host: str, port: int, threads: int) -> grpc.Server:
    """Optuna's gRPC storage proxy server for ``storage``, not started (its public
    `run_grpc_proxy_server` blocks and gives no handle to stop it gracefully)."""
    from concurrent.futures import ThreadPoolExecutor

    from optuna.storages._grpc.server import make_server

    return make_server(storage, host, port, ThreadPoolExecutor(max_workers=threads))


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the calls inside (TPE's multivariate and
    constant-liar options and metric names are marked experimental; they are the design here),
    and only there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
