"""Every use of Optuna's private API, in one place. tests/test_structure.py pins these calls
to the installed Optuna, so an upgrade that moves them fails there and not in a worker."""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

if TYPE_CHECKING:
    import grpc
    from optuna.storages import JournalStorage

TESTED_WITH = "5.0"  # the Optuna release these calls were checked against (major.minor)
FIXED_PARAMS = "fixed_params"  # the system attr Optuna's enqueue_trial sets (params: none here)


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage


def backend_of(storage: BaseStorage) -> BaseStorage:
    """The storage itself under Optuna's cache (studies wrap an RDBStorage in one)."""
    return getattr(storage, "_backend", storage)


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def live_trial(study: optuna.Study, trial_id: int,
               frozen: FrozenTrial | None = None) -> optuna.Trial:
    """The Trial object of a stored trial (Optuna builds them only inside `ask`): for one this
    process claimed, or to attach a dashboard note to any trial. ``frozen``: the trial as this
    process just read it, so it is not read again."""
    if frozen is None:
        return optuna.Trial(study, trial_id)
    # Optuna 5.0's `Trial.__init__`, its read of the trial replaced by ``frozen``
    # (tests/test_structure.py checks both build the same object).
    trial = object.__new__(optuna.Trial)
    trial.study, trial._trial_id, trial.storage = study, trial_id, study._storage
    trial._cached_frozen_trial = frozen
    study.sampler.before_trial(optuna.pruners._filter_study(study, frozen), frozen)
    trial.relative_search_space, trial._relative_params = None, None
    trial._fixed_params = frozen.system_attrs.get(FIXED_PARAMS, {})
    return trial


def tell_live(study: optuna.Study, trial: optuna.Trial, state: TrialState,
              values: float | Sequence[float] | None = None) -> FrozenTrial:
    """Tell the outcome of a trial this process runs, as `Study.tell` does, without its two
    reads of the trial: the trial as this process wrote it stands in (its completion time
    this process's clock). Raises UpdateFinishedTrialError when another process finished
    it meanwhile; ValueError for values `Study.tell` refuses."""
    from optuna.study._tell import _check_state_and_values, _check_values_are_feasible

    if not state.is_finished():
        raise ValueError(f"Cannot tell a trial {state.name}.")
    frozen = trial._cached_frozen_trial
    if values is not None:
        values = list(values) if isinstance(values, Sequence) else [values]
    _check_state_and_values(state, values)
    if state == TrialState.COMPLETE:
        assert values is not None
        if (problem := _check_values_are_feasible(study, values)) is not None:
            raise ValueError(problem)
    elif state == TrialState.PRUNED and frozen.last_step is not None:
        # As Optuna: a pruned trial's value is its last reported one, when it is a number.
        last = frozen.intermediate_values[frozen.last_step]
        if _check_values_are_feasible(study, [last]) is None:
            values = [last]
    values = None if values is None else [float(v) for v in values]
    study._thread_local.cached_all_trials = None
    # The sampler hears of the outcome before it is stored, as in `Study.tell` (a sampler may
    # write to the trial then), so also of a trial another process finished meanwhile, which
    # `Study.tell` read first and skipped: no sampler here keeps state in `after_trial`.
    try:
        study.sampler.after_trial(optuna.pruners._filter_study(study, frozen), frozen, state,
                                  values)
    finally:
        if (backend := upsert_backend(study._storage)) is not None:
            _finish_in_one_transaction(backend, frozen._trial_id, state, values)
        else:
            study._storage.set_trial_state_values(frozen._trial_id, state, values)
    told = copy.copy(frozen)
    told.state, told.values, told.datetime_complete = state, values, datetime.now()
    return told


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


def claim_waiting(study: optuna.Study, waiting: Iterable[int],
                  user_attrs: dict[str, Any] | None = None,
                  system_attrs: dict[str, Any] | None = None) -> int | None:
    """Claim one of the WAITING trials ``waiting`` (trial ids): move the first that no other
    process takes first to RUNNING, store ``user_attrs`` and ``system_attrs`` on it and return
    its id; None when every one was taken. (Optuna has no public "pop a queued trial only"
    call: `ask` would sample a new one.) On SQLite and PostgreSQL a claim is one transaction
    (Optuna's calls would take three)."""
    storage = storage_of(study)
    backend = upsert_backend(storage)
    user_attrs, system_attrs = user_attrs or {}, system_attrs or {}
    for waiting_id in waiting:
        if backend is not None:
            if _claim_in_one_transaction(backend, waiting_id, user_attrs, system_attrs):
                return waiting_id
            continue
        try:
            if storage.set_trial_state_values(waiting_id, state=TrialState.RUNNING):
                for key, value in user_attrs.items():
                    storage.set_trial_user_attr(waiting_id, key, value)
                for key, value in system_attrs.items():
                    storage.set_trial_system_attr(waiting_id, key, value)
                return waiting_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


# A worker's own writes on SQLite and PostgreSQL: Optuna's rows and checks, each write one
# transaction through SQLAlchemy Core (Optuna's ORM session costs more CPU than the database
# does for such small writes: with many workers on few cores that is what they wait for).
# SQLite's `BEGIN IMMEDIATE` (`serialize_sqlite`) applies to these transactions as to Optuna's.

def upsert_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under ``storage`` when its database takes multi-row upserts (SQLite,
    PostgreSQL); None for any other storage."""
    backend = backend_of(storage)
    return backend if isinstance(backend, RDBStorage) and backend.engine.name in _UPSERTS \
        else None


def _claim_in_one_transaction(backend: RDBStorage, waiting_id: int, user_attrs: dict[str, Any],
                              system_attrs: dict[str, Any]) -> bool:
    """WAITING -> RUNNING as one compare-and-set statement, with the start time and the
    attrs, committed together."""
    from optuna.storages._rdb import models

    with backend.engine.begin() as db:
        claimed = _compare_and_set(db, waiting_id, TrialState.WAITING, TrialState.RUNNING,
                                   datetime_start=_stored_now())
        if claimed:
            _upsert_attrs(backend, db, models.TrialUserAttributeModel, waiting_id, user_attrs)
            _upsert_attrs(backend, db, models.TrialSystemAttributeModel, waiting_id,
                          system_attrs)
    return claimed


def _finish_in_one_transaction(backend: RDBStorage, trial_id: int, state: TrialState,
                               values: list[float] | None) -> None:
    """RUNNING -> ``state`` (finished) as one compare-and-set statement, with the completion
    time and ``values``; UpdateFinishedTrialError when the trial is not running (another
    process finished it)."""
    from optuna.storages._rdb import models

    with backend.engine.begin() as db:
        if not _compare_and_set(db, trial_id, TrialState.RUNNING, state,
                                datetime_complete=_stored_now()):
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"trial id {trial_id} is not running: another process finished it")
        if values:
            v = models.TrialValueModel
            db.execute(_upsert(backend.engine.name, v, ("objective",), ("value", "value_type")),
                       [{"trial_id": trial_id, "objective": objective, "value": stored,
                         "value_type": kind}
                        for objective, (stored, kind) in enumerate(map(v.value_to_stored_repr,
                                                                       values))])


def _compare_and_set(db: Connection, trial_id: int, was: TrialState, state: TrialState,
                     **columns: Any) -> bool:
    """Move a trial from state ``was`` to ``state`` (and set ``columns``) in one statement;
    False when it was not in ``was`` (on PostgreSQL a racing writer waits for the row, then
    finds it moved; SQLite runs one writer at a time)."""
    from optuna.storages._rdb import models
    from sqlalchemy import update

    t = models.TrialModel.__table__.c
    return db.execute(update(models.TrialModel.__table__)
                      .where(t.trial_id == trial_id, t.state == was)
                      .values(state=state, **columns)).rowcount == 1


def _stored_now() -> datetime:
    """Now, as Optuna's `TrialModel` stores a trial's times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def adopt_trial(study: optuna.Study, frozen: FrozenTrial) -> None:
    """Make Optuna's cache in front of an RDB storage know a trial this process claimed (as
    just read: ``frozen``), as it does for a trial this process creates (`create_new_trial`):
    its `set_trial_param` looks the trial up there, and the cache would otherwise learn of it
    only by reading every unfinished trial of the study again."""
    from optuna.storages._cached_storage import _CachedStorage, _StudyInfo

    storage = storage_of(study)
    if not isinstance(storage, _CachedStorage):
        return
    trial_id = frozen._trial_id
    with storage._lock:
        info = storage._studies.setdefault(study._study_id, _StudyInfo())
        # A copy: the Trial that runs it changes its own (params, attrs) as it goes.
        storage._add_trials_to_cache(study._study_id, [copy.deepcopy(frozen)])
        # Read again with the unfinished trials on the cache's next read (on PostgreSQL a
        # trial can be queued after a higher-numbered one finished: never re-read otherwise).
        info.unfinished_trial_ids.add(trial_id)


def set_user_attrs(trial: Any, attrs: dict[str, Any]) -> None:
    """Store ``attrs`` as user attrs of a live trial in one transaction on SQLite and
    PostgreSQL (Optuna commits each attr apart: about 6 ms a commit on SQLite, a trial's record
    has ~20). Any other trial (another storage, a test double) gets them one `set_user_attr`
    at a time."""
    backend = upsert_backend(trial.storage) if isinstance(trial, optuna.Trial) else None
    if backend is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    if not attrs:
        return
    from optuna.storages._rdb import models

    # Unlike Optuna's, an IntegrityError is raised, not ignored: ignoring it would drop every
    # attr of the batch (attrs are upserts here, so none is expected).
    with backend.engine.begin() as db:
        updatable_study_id(db, trial._trial_id)
        _upsert_attrs(backend, db, models.TrialUserAttributeModel, trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def _upsert_attrs(backend: RDBStorage, db: Connection, model: Any, trial_id: int,
                  attrs: dict[str, Any]) -> None:
    """Optuna's upsert of a trial's attrs (``model``: its user or system attr table), all of
    ``attrs`` in one call."""
    if attrs:
        db.execute(_upsert(backend.engine.name, model, ("key",), ("value_json",)),
                   [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                    for key, value in attrs.items()])


@functools.cache
def _upsert(dialect: str, model: Any, key: tuple[str, ...], set_: tuple[str, ...]) -> Any:
    """INSERT ... ON CONFLICT (trial_id, ``key``) DO UPDATE ``set_`` into ``model``'s table,
    built once: run with a list of rows, SQLAlchemy sends them as one multi-row statement (on
    SQLite, one executemany) and compiles it once per process."""
    rows = _UPSERTS[dialect](model)
    return rows.on_conflict_do_update(
        index_elements=[model.trial_id, *(getattr(model, k) for k in key)],
        set_={name: getattr(rows.excluded, name) for name in set_})


# Multi-row upserts (INSERT ... ON CONFLICT DO UPDATE), by SQLAlchemy dialect name (SQLite's
# from 3.24, as Optuna's own upsert).
_UPSERTS: dict[str, Callable[[Any], Any]] = {"postgresql": pg_insert} | (
    {"sqlite": sqlite_insert} if sqlite3.sqlite_version_info >= (3, 24, 0) else {})


def updatable_study_id(db: Connection, trial_id: int) -> int:
    """The trial's study id, once Optuna's check that the trial may still be written has
    passed (UpdateFinishedTrialError; KeyError for a trial that does not exist, as Optuna's).
    Not Optuna's `check_trial_is_updatable`: it reads the trial again for its message, on
    another connection, which on SQLite waits for the write lock this transaction holds."""
    from optuna.storages._rdb import models

    t = models.TrialModel.__table__.c
    # Shared-locked until the write commits (PostgreSQL; SQLite's transactions are serial): a
    # stale sweep failing the trial meanwhile waits, so it never requeues the slot without it.
    row = db.execute(select(t.study_id, t.number, t.state).where(t.trial_id == trial_id)
                     .with_for_update(read=True)).one_or_none()
    if row is None:
        raise KeyError(f"No trial with trial_id {trial_id} exists.")
    if row.state.is_finished():
        raise optuna.exceptions.UpdateFinishedTrialError(
            f"Trial#{row.number} has already finished and can not be updated.")
    return cast(int, row.study_id)


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
    from sqlalchemy import insert

    storage = trial.storage
    backend = upsert_backend(storage)
    if backend is None:
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
            with backend.engine.begin() as db:
                study = updatable_study_id(db, trial._trial_id)
                rows = []
                for name, value, distribution in held.held:
                    # Optuna 5.0's `_set_trial_param_without_commit` for one param (its
                    # checks and its row), the trial's row read once for all.
                    previous = known.get(name)
                    if previous is None:
                        previous = first_distribution(db, study, name)
                    if previous is not None:
                        check_distribution_compatibility(previous, distribution)
                    rows.append({"trial_id": trial._trial_id, "param_name": name,
                                 "param_value": value,
                                 "distribution_json": distribution_to_json(distribution)})
                db.execute(insert(models.TrialParamModel.__table__), rows)
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


def first_distribution(db: Connection, study: int, name: str) -> Any:
    """The distribution of the study's first stored param ``name`` (None: none stored), which
    a new one must be compatible with (as Optuna's `_set_trial_param_without_commit` reads)."""
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models

    p, t = models.TrialParamModel.__table__.c, models.TrialModel.__table__.c
    first = db.execute(select(p.distribution_json).join_from(
        models.TrialParamModel.__table__, models.TrialModel.__table__)
        .where(t.study_id == study, p.param_name == name).limit(1)).scalar()
    return None if first is None else json_to_distribution(first)


def journal_of(storage: BaseStorage) -> JournalStorage | None:
    """The journal storage ``storage`` is, or None for any other kind."""
    from optuna.storages import JournalStorage

    return storage if isinstance(storage, JournalStorage) else None


def append_waiting_trials(journal: JournalStorage, study: int,
                          user_attrs: Sequence[dict[str, Any]]) -> None:
    """Queue one WAITING trial per entry of ``user_attrs`` in study ``study`` of ``journal``:
    the records Optuna's `enqueue_trial` appends one locked write each (Optuna 5.0's
    `create_new_trial` with enqueue_trial's template), appended in one write under the
    journal's file lock. The replay numbers them in file order, after whatever other processes
    appended before; this process's replay then reads them in, as Optuna's write does."""
    from optuna.storages.journal._storage import JournalOperation

    with journal._thread_lock:
        worker = journal._replay_result.worker_id
        journal._backend.append_logs([
            {"op_code": JournalOperation.CREATE_TRIAL, "worker_id": worker, "study_id": study,
             "datetime_start": None, "state": TrialState.WAITING, "value": None,
             "values": None, "distributions": {}, "params": {}, "user_attrs": attrs,
             "system_attrs": {FIXED_PARAMS: {}}, "intermediate_values": {}}
            for attrs in user_attrs])
        journal._sync_with_backend()


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


def grpc_server(storage: BaseStorage, threads: int,
                interceptors: Sequence[Any]) -> grpc.Server:
    """A gRPC server of Optuna's storage proxy service for ``storage``, with no port yet and
    not started (Optuna's `make_server` opens a plain port and takes no interceptors; its
    `run_grpc_proxy_server` blocks and gives no handle to stop it gracefully)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import (
        add_StorageServiceServicer_to_server,
    )
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    server = grpc.server(ThreadPoolExecutor(max_workers=threads), interceptors=interceptors)
    add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    return server


def grpc_client(host: str, port: int,
                credentials: grpc.ChannelCredentials | None) -> optuna.storages.GrpcStorageProxy:
    """Optuna's storage proxy client for HOST:PORT over a channel with ``credentials`` (None:
    a plain one), not yet connected."""
    if credentials is None:
        return optuna.storages.GrpcStorageProxy(host=host, port=port)
    return _SecureGrpcStorageProxy(host=host, port=port, credentials=credentials)


class _SecureGrpcStorageProxy(optuna.storages.GrpcStorageProxy):
    """Optuna's client over a channel with credentials (Optuna's opens only plain channels):
    Optuna 5.0's `_setup` and `wait_server_ready` with the channel replaced. Not picklable."""

    def __init__(self, *, host: str, port: int, credentials: grpc.ChannelCredentials) -> None:
        self._credentials = credentials
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        import grpc
        from optuna.storages._grpc.auto_generated.api_pb2_grpc import StorageServiceStub
        from optuna.storages._grpc.client import GrpcClientCache

        self._channel = grpc.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                            options=[("grpc.max_receive_message_length", -1)])
        self._stub = StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)

    def wait_server_ready(self, timeout: float | None = None) -> None:
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as e:
            raise ConnectionError("GRPC connection timeout") from e


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the calls inside (TPE's multivariate and
    constant-liar options and metric names are marked experimental; they are the design here),
    and only there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
