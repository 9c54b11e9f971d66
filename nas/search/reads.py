"""What a worker reads of its study on every pass, at a cost that does not grow with the study.

Optuna's cached storage reads every unfinished trial again, through its ORM, on each
`get_trials` (whatever states are asked for): with 10,000 queued trials each of a worker's
reads took seconds. On an RDB storage (SQLite, PostgreSQL) these reads go to the database
for what they need only: the RUNNING trials, a few WAITING trial ids, the completed trials of
one pattern (through an index on the pattern hash). Journal files and storage proxies keep
Optuna's own reads (a journal is replayed in memory; a proxy has no SQL).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, inspect, literal_column, select, text

from .optuna_api import adopt_trial, backend_of, claim_waiting, storage_of, study_id, trial_id
from .snapshot import rdb_backend, read_trials, trial_as_read

_log = logging.getLogger(__name__)
# Indexes the worker's reads need on Optuna's tables (created once; Optuna's own schema has
# none on a trial's state, nor on attribute values).
INDEXES = {
    "skipnas_trial_state": "trials (study_id, state, number)",
    "skipnas_pattern_hash": "trial_user_attributes (value_json) WHERE key = 'hash'",
}
CLAIM_CANDIDATES = 16  # WAITING trials read per claim: enough that racing workers find one


def ensure_indexes(storage: optuna.storages.BaseStorage) -> None:
    """Create :data:`INDEXES` in an RDB storage where they are missing, so that a worker's
    reads (WAITING ids, RUNNING trials, a pattern's trials) do not scan the study. A database
    that refuses them (no rights) is noted: the reads still work, scanning."""
    rdb = backend_of(storage)
    if not isinstance(rdb, RDBStorage):
        return
    # Looked up first: PostgreSQL locks the table for `CREATE INDEX IF NOT EXISTS` even when
    # the index is there, which would stall every worker's writes at each start.
    present = {i["name"] for table in ("trials", "trial_user_attributes")
               for i in inspect(rdb.engine).get_indexes(table)}
    for name, on in INDEXES.items():
        if name in present:
            continue
        try:
            with rdb.engine.begin() as db:
                db.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {on}"))
        except Exception as e:  # the driver's error for a read-only or restricted database
            if name not in {i["name"] for i in inspect(rdb.engine).get_indexes(
                    on.split()[0])}:  # not another process's creation in between
                _log.warning("could not create index %s (%s: %s); the workers' reads scan "
                             "the study instead", name, type(e).__name__,
                             str(e).splitlines()[0])


def claim_next(study: optuna.Study, user_attrs: dict[str, Any] | None = None,
               system_attrs: dict[str, Any] | None = None) -> FrozenTrial | None:
    """Claim the first WAITING trial of ``study`` that no other process takes first, storing
    ``user_attrs`` and ``system_attrs`` with the claim: the trial as stored then (RUNNING);
    None when none is waiting."""
    reads = StudyReads(study)
    while waiting := reads.waiting_ids():
        if (claimed := claim_waiting(study, waiting, user_attrs, system_attrs)) is not None:
            trial = reads.trial(claimed)
            adopt_trial(study, trial)
            return trial
    return None


class StudyReads:
    """A worker's reads of ``study``: straight from the database on RDB storages, through
    Optuna otherwise."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.rdb = rdb_backend(storage_of(study))
        self.study_id = study_id(study)

    def trials(self, states: Collection[TrialState], keys: Collection[str]) -> list[FrozenTrial]:
        """The trials in ``states``, carrying the user and system attrs ``keys`` only (and
        no params): on RDB storages that is all they carry."""
        if self.rdb is None:  # cut as the database read would be: one shape on every storage
            return [trial_as_read(t, params=False, keys=keys)
                    for t in self.study.get_trials(deepcopy=False, states=tuple(states))]
        return read_trials(self.rdb, self.study_id, params=False, keys=keys, states=states)

    def trial(self, trial_id: int) -> FrozenTrial:
        """One trial, by id, whole."""
        if self.rdb is None:
            return storage_of(self.study).get_trial(trial_id)
        trial, = read_trials(self.rdb, self.study_id, ids=(trial_id,))
        return trial

    def tried_since(self, number: int) -> tuple[list[FrozenTrial], int | None] | None:
        """For a sampler's history: the trials numbered ``number`` or above that are not
        WAITING, with their params and values (no attrs), by number, and the lowest such
        number of a trial still WAITING or RUNNING then (None: none). None where the storage
        is no database (then Optuna's trials). Read before the trials, that number is never
        above a queued trial the read could miss."""
        if self.rdb is None:
            return None
        t = models.TrialModel.__table__.c
        with self.rdb.engine.connect() as db:
            first_open = db.execute(
                select(func.min(t.number)).where(
                    t.study_id == self.study_id, t.number >= number,
                    t.state.in_([TrialState.WAITING, TrialState.RUNNING]))).scalar()
        trials = read_trials(self.rdb, self.study_id, params=True, keys=(),
                             states=[s for s in TrialState if s != TrialState.WAITING],
                             from_number=number)
        return sorted(trials, key=lambda trial: trial.number), first_open

    def state_counts(self) -> dict[TrialState, int]:
        """How many trials the study has in each state (states without any left out)."""
        if self.rdb is None:
            return dict(Counter(t.state for t in self.study.get_trials(deepcopy=False)))
        t = models.TrialModel.__table__.c
        with self.rdb.engine.connect() as db:
            return {state: n for state, n in db.execute(
                select(t.state, func.count()).where(t.study_id == self.study_id)
                .group_by(t.state))}

    def best_value(self) -> float | None:
        """The highest first objective of a completed trial (None: none completed)."""
        if self.rdb is None:
            return max((t.values[0] for t in self.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,)) if t.values), default=None)
        t = models.TrialModel.__table__.c
        v = models.TrialValueModel.__table__.c
        with self.rdb.engine.connect() as db:
            return db.execute(
                select(func.max(v.value)).join_from(models.TrialValueModel, models.TrialModel)
                .where(t.study_id == self.study_id, t.state == TrialState.COMPLETE,
                       v.objective == 0,
                       v.value_type == models.TrialValueModel.TrialValueType.FINITE)).scalar()

    def waiting_ids(self) -> list[int]:
        """Trial ids of the first WAITING trials by number (a few: others claim too)."""
        if self.rdb is None:
            return [trial_id(t) for t in self.study.get_trials(
                deepcopy=False, states=(TrialState.WAITING,))]
        t = models.TrialModel.__table__.c
        with self.rdb.engine.connect() as db:
            return list(db.execute(
                select(t.trial_id).where(t.study_id == self.study_id,
                                         t.state == TrialState.WAITING)
                .order_by(t.number).limit(CLAIM_CANDIDATES)).scalars())

    def with_hash(self, pattern_hash: str, keys: Collection[str],
                  states: Collection[TrialState] = (TrialState.COMPLETE,),
                  other_than: int | None = None) -> list[FrozenTrial] | None:
        """The trials of pattern ``pattern_hash`` in ``states`` (attrs ``keys`` only), but
        trial id ``other_than`` (the asking trial: most often no other is read); None where
        the storage cannot select by hash (then :class:`~nas.search.worker.TwinIndex`)."""
        if self.rdb is None:
            return None
        a = models.TrialUserAttributeModel.__table__.c
        with self.rdb.engine.connect() as db:
            # The attrs alone, the key a literal: so the planners take the partial hash index
            # (joined with the trials, SQLite preferred scanning the completed ones).
            ids = list(db.execute(
                select(a.trial_id).where(a.key == literal_column("'hash'"),
                                         a.value_json == json.dumps(pattern_hash))).scalars())
        ids = [i for i in ids if i != other_than]
        if not ids:
            return []
        return read_trials(self.rdb, self.study_id, params=False, keys=keys, states=states,
                           ids=ids)
