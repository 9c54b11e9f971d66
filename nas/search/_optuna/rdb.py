"""Optuna's tables under an RDB storage (SQLite, PostgreSQL), written straight: the RDB under
Optuna's cache, how a trial's times are stored, and a worker's own writes.

A worker's writes are Optuna's rows and checks, each write one transaction through SQLAlchemy
Core (Optuna's ORM session costs more CPU than the database does for such small writes: with
many workers on few cores that is what they wait for). SQLite's `BEGIN IMMEDIATE`
(`serialize_sqlite`) applies to these transactions as to Optuna's.
"""
from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def rdb_of(storage: BaseStorage, upserts: bool = False) -> RDBStorage | None:
    """The RDB storage ``storage`` is, or that Optuna's cache wraps (studies wrap an RDBStorage
    in one); None for any other storage. With ``upserts``: only one whose database takes
    multi-row upserts (SQLite, PostgreSQL), which the writes here need."""
    inner = storage._backend if isinstance(storage, _CachedStorage) else storage
    if not isinstance(inner, RDBStorage) or (upserts and inner.engine.name not in _UPSERTS):
        return None
    return inner


# A trial's times: `TrialModel` stores them as naive UTC (SQLite's driver reads them back as
# text), Optuna's storage returns them as naive local time.

def stored_now() -> datetime:
    """Now, as a trial's time is stored."""
    return datetime.now(UTC).replace(tzinfo=None)


def from_stored(stored: datetime | str | None) -> datetime | None:
    """A stored time as Optuna's storage returns it."""
    if isinstance(stored, str):
        stored = datetime.fromisoformat(stored)
    if stored is None or (time.timezone == 0 and not time.daylight):  # servers, containers
        return stored
    return stored.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


def claim_row(backend: RDBStorage, waiting_id: int, user_attrs: dict[str, Any],
              system_attrs: dict[str, Any]) -> bool:
    """WAITING -> RUNNING as one compare-and-set statement, with the start time and the
    attrs, committed together; False when another process took the trial first."""
    with backend.engine.begin() as db:
        claimed = _compare_and_set(db, waiting_id, TrialState.WAITING, TrialState.RUNNING,
                                   datetime_start=stored_now())
        if claimed:
            _upsert_attrs(backend, db, models.TrialUserAttributeModel, waiting_id, user_attrs)
            _upsert_attrs(backend, db, models.TrialSystemAttributeModel, waiting_id,
                          system_attrs)
    return claimed


def finish_row(backend: RDBStorage, trial_id: int, state: TrialState,
               values: list[float] | None) -> None:
    """RUNNING -> ``state`` (finished) as one compare-and-set statement, with the completion
    time and ``values``; UpdateFinishedTrialError when the trial is not running (another
    process finished it)."""
    with backend.engine.begin() as db:
        if not _compare_and_set(db, trial_id, TrialState.RUNNING, state,
                                datetime_complete=stored_now()):
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
    t = models.TrialModel.__table__.c
    return db.execute(update(models.TrialModel.__table__)
                      .where(t.trial_id == trial_id, t.state == was)
                      .values(state=state, **columns)).rowcount == 1


def write_user_attrs(backend: RDBStorage, trial_id: int, attrs: dict[str, Any]) -> None:
    """Upsert a running trial's user attrs ``attrs`` in one transaction. Unlike Optuna's, an
    IntegrityError is raised, not ignored: ignoring it would drop every attr of the batch
    (attrs are upserts here, so none is expected)."""
    with backend.engine.begin() as db:
        updatable_study_id(db, trial_id)
        _upsert_attrs(backend, db, models.TrialUserAttributeModel, trial_id, attrs)


def label_trials(backend: RDBStorage, key: str, values: dict[int, Any]) -> None:
    """Upsert one user attr ``key`` of many trials (trial id -> value), finished ones too, in
    one transaction: a label derived from what the trials store, for trials stored before it
    was written with them."""
    if values:
        with backend.engine.begin() as db:
            db.execute(_upsert(backend.engine.name, models.TrialUserAttributeModel, ("key",),
                               ("value_json",)),
                       [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                        for trial_id, value in values.items()])


def write_params(backend: RDBStorage, trial_id: int,
                 params: list[tuple[str, float, BaseDistribution]],
                 known: dict[str, BaseDistribution]) -> None:
    """Insert a running trial's ``params`` (name, internal value, distribution) in one
    transaction, each checked against the distribution ``known`` for its name, else the
    study's first stored one: Optuna 5.0's `_set_trial_param_without_commit` for each param
    (its checks and its row), the trial's row read once for all."""
    with backend.engine.begin() as db:
        study = updatable_study_id(db, trial_id)
        rows = []
        for name, value, distribution in params:
            previous = known.get(name)
            if previous is None:
                previous = first_distribution(db, study, name)
            if previous is not None:
                check_distribution_compatibility(previous, distribution)
            rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                         "distribution_json": distribution_to_json(distribution)})
        db.execute(insert(models.TrialParamModel.__table__), rows)


def updatable_study_id(db: Connection, trial_id: int) -> int:
    """The trial's study id, once Optuna's check that the trial may still be written has
    passed (UpdateFinishedTrialError; KeyError for a trial that does not exist, as Optuna's).
    Not Optuna's `check_trial_is_updatable`: it reads the trial again for its message, on
    another connection, which on SQLite waits for the write lock this transaction holds."""
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


def first_distribution(db: Connection, study: int, name: str) -> BaseDistribution | None:
    """The distribution of the study's first stored param ``name`` (None: none stored), which
    a new one must be compatible with (as Optuna's `_set_trial_param_without_commit` reads)."""
    p, t = models.TrialParamModel.__table__.c, models.TrialModel.__table__.c
    first = db.execute(select(p.distribution_json).join_from(
        models.TrialParamModel.__table__, models.TrialModel.__table__)
        .where(t.study_id == study, p.param_name == name).limit(1)).scalar()
    return None if first is None else json_to_distribution(first)


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
