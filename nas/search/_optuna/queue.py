"""Queueing many WAITING trials at once.

Optuna's `enqueue_trial` writes each trial in its own transaction (a journal: its own locked
append) and numbers it by counting the study's earlier trials, so queueing a million took
hours. Here the trials are written a chunk per transaction on an RDB storage (SQLite,
PostgreSQL) and a chunk per locked append on a journal file, exactly as `enqueue_trial` writes
them (state WAITING, no start time, the user attrs, `fixed_params` {} as the only system attr,
numbered in order after the study's last trial); storage proxies and in-memory studies keep
`enqueue_trial`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages._rdb import models
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState
from sqlalchemy import func, insert, select
from tqdm.auto import tqdm

from ... import interrupts
from .api import FIXED_PARAMS
from .rdb import rdb_of

CHUNK = 5000  # trials per transaction or append: a Ctrl-C waits for at most one chunk's write


def enqueue(study: optuna.Study, user_attrs: Sequence[dict[str, Any]],
            progress: bool = False) -> None:
    """Queue one WAITING trial per entry of ``user_attrs`` (its user attrs), in order. Each
    chunk numbers its trials after every trial the study holds when it is written, as Optuna
    does (a worker may re-queue a trial between two chunks). Ctrl-C takes effect between two
    chunks, never inside one's write. ``progress``: a bar when there is more than a chunk."""
    storage = study._storage
    rdb = rdb_of(storage)
    journal = storage if isinstance(storage, JournalStorage) else None
    if rdb is not None and not rdb.engine.dialect.\
            insert_executemany_returning_sort_by_parameter_order:
        rdb = None  # MySQL, SQLite before 3.35: no RETURNING on many rows
    after: tuple[int, int] | None = None   # (next number, last trial id) of the last chunk
    with interrupts.deferred(), tqdm(total=len(user_attrs), unit="trial", desc="queueing",
                                     disable=not progress or len(user_attrs) <= CHUNK) as bar:
        for chunk in _chunks(user_attrs, CHUNK):
            interrupts.check()
            if rdb is not None:
                after = _insert(rdb, study._study_id, chunk, after)
            elif journal is not None:
                append_waiting_trials(journal, study._study_id, chunk)
            else:  # proxies, MySQL: Optuna's own, a trial at a time
                for attrs in chunk:
                    interrupts.check()
                    study.enqueue_trial({}, user_attrs=attrs)
            bar.update(len(chunk))


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


def append_waiting_trials(journal: JournalStorage, study: int,
                          user_attrs: Sequence[dict[str, Any]]) -> None:
    """Queue one WAITING trial per entry of ``user_attrs`` in study ``study`` of ``journal``:
    the records Optuna's `enqueue_trial` appends one locked write each (Optuna 5.0's
    `create_new_trial` with enqueue_trial's template), appended in one write under the
    journal's file lock. The replay numbers them in file order, after whatever other processes
    appended before; this process's replay then reads them in, as Optuna's write does."""
    with journal._thread_lock:
        worker = journal._replay_result.worker_id
        journal._backend.append_logs([
            {"op_code": JournalOperation.CREATE_TRIAL, "worker_id": worker, "study_id": study,
             "datetime_start": None, "state": TrialState.WAITING, "value": None,
             "values": None, "distributions": {}, "params": {}, "user_attrs": attrs,
             "system_attrs": {FIXED_PARAMS: {}}, "intermediate_values": {}}
            for attrs in user_attrs])
        journal._sync_with_backend()
