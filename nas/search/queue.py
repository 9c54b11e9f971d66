"""Queueing many WAITING trials at once.

Optuna's `enqueue_trial` writes each trial in its own transaction and numbers it by counting
the study's earlier trials, so queueing a million took hours. On an RDB storage (SQLite,
PostgreSQL) the trials are written here a chunk per transaction, exactly as `enqueue_trial`
writes them (state WAITING, no start time, the user attrs, `fixed_params` {} as the only
system attr, numbered in order after the study's last trial); journal files, storage proxies
and in-memory studies keep `enqueue_trial`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import func, insert, select

from .. import interrupts
from .optuna_api import storage_of, study_id
from .snapshot import rdb_backend

CHUNK = 5000  # trials per transaction: a Ctrl-C waits for at most one chunk's commit
FIXED_PARAMS = "fixed_params"  # the system attr Optuna's enqueue_trial sets (params: none here)


def enqueue(study: optuna.Study, user_attrs: Sequence[dict[str, Any]]) -> None:
    """Queue one WAITING trial per entry of ``user_attrs`` (its user attrs), in order. Each
    chunk numbers its trials after every trial the study holds when it commits, as Optuna
    does (a worker may re-queue a trial between two chunks). Ctrl-C takes effect between two
    chunks, never inside one's commit."""
    rdb = rdb_backend(storage_of(study))
    with interrupts.deferred():
        if rdb is None or not rdb.engine.dialect.\
                insert_executemany_returning_sort_by_parameter_order:
            # Journal files, proxies; databases without RETURNING on many rows (MySQL, SQLite
            # before 3.35): Optuna's own, a trial at a time.
            for attrs in user_attrs:
                interrupts.check()
                study.enqueue_trial({}, user_attrs=attrs)
            return
        after: tuple[int, int] | None = None   # (next number, last trial id) of the last chunk
        for chunk in _chunks(user_attrs, CHUNK):
            interrupts.check()
            after = _insert(rdb, study_id(study), chunk, after)


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _insert(rdb: optuna.storages.RDBStorage, study: int, chunk: list[dict[str, Any]],
            after: tuple[int, int] | None) -> tuple[int, int]:
    """Write ``chunk``'s trials, numbered after the study's trials: counted whole for the first
    chunk, then as ``after``'s next number plus the trials others added since its last id.
    Returns the next number and the last trial id written."""
    t = models.TrialModel.__table__
    with rdb.engine.begin() as db:
        # As Optuna does for each trial: the study's row locked while trials are numbered
        # (Optuna's own trial creation waits for it, so no other trial is half-made).
        db.execute(select(models.StudyModel.__table__.c.study_id)
                   .where(models.StudyModel.__table__.c.study_id == study).with_for_update())
        since = t.c.study_id == study
        if after is not None:
            since = since & (t.c.trial_id > after[1])
        first = db.execute(select(func.count()).select_from(t).where(since)).scalar_one() \
            + (0 if after is None else after[0])
        ids = list(db.execute(
            insert(t).returning(t.c.trial_id, sort_by_parameter_order=True),
            [{"study_id": study, "number": first + k, "state": TrialState.WAITING,
              "datetime_start": None, "datetime_complete": None}
             for k in range(len(chunk))]).scalars())
        user = [{"trial_id": ids[k], "key": key, "value_json": json.dumps(value)}
                for k, attrs in enumerate(chunk) for key, value in attrs.items()]
        if user:
            db.execute(insert(models.TrialUserAttributeModel.__table__), user)
        db.execute(insert(models.TrialSystemAttributeModel.__table__),
                   [{"trial_id": i, "key": FIXED_PARAMS, "value_json": "{}"} for i in ids])
    return first + len(chunk), ids[-1]
