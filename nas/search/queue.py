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
    """Queue one WAITING trial per entry of ``user_attrs`` (its user attrs), in order. The
    caller holds the study's lock (:func:`nas.search.storage.exclusive`): no other process
    adds trials to it meanwhile, so the numbers follow on. Ctrl-C takes effect between two
    chunks, never inside one's commit."""
    rdb = rdb_backend(storage_of(study))
    with interrupts.deferred():
        if rdb is None:
            for attrs in user_attrs:
                interrupts.check()
                study.enqueue_trial({}, user_attrs=attrs)
            return
        number = None
        for chunk in _chunks(user_attrs, CHUNK):
            interrupts.check()
            number = _insert(rdb, study_id(study), chunk, number)


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _insert(rdb: optuna.storages.RDBStorage, study: int, chunk: list[dict[str, Any]],
            first: int | None) -> int:
    """Write ``chunk``'s trials numbered from ``first`` (None: after the study's trials, counted
    here); returns the number after the last."""
    t = models.TrialModel.__table__
    with rdb.engine.begin() as db:
        # As Optuna does for each trial: the study's row locked while trials are numbered.
        db.execute(select(models.StudyModel.__table__.c.study_id)
                   .where(models.StudyModel.__table__.c.study_id == study).with_for_update())
        if first is None:
            first = db.execute(select(func.count()).select_from(t)
                               .where(t.c.study_id == study)).scalar_one()
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
    return first + len(chunk)
