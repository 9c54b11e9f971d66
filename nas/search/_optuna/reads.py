"""What a worker reads of its study on every pass, at a cost that does not grow with the study,
and its claim of the next queued trial; every trial of a study read in one query per table.

Optuna's cached storage reads every unfinished trial again, through its ORM, on each
`get_trials` (whatever states are asked for): with 10,000 queued trials each of a worker's
reads took seconds. On an RDB storage (SQLite, PostgreSQL) these reads go to the database
for what they need only: the RUNNING trials, a few WAITING trial ids, the completed trials of
one pattern (through an index on the pattern hash). Journal files and storage proxies keep
Optuna's own reads (a journal is replayed in memory; a proxy has no SQL).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import gc
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Select, func, literal_column, select, true

from .rdb import claim_row, from_stored, rdb_of

CLAIM_CANDIDATES = 16  # WAITING trials read per claim: enough that racing workers find one


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


def claim_waiting(study: optuna.Study, waiting: Iterable[int],
                  user_attrs: dict[str, Any] | None = None,
                  system_attrs: dict[str, Any] | None = None) -> int | None:
    """Claim one of the WAITING trials ``waiting`` (trial ids): move the first that no other
    process takes first to RUNNING, store ``user_attrs`` and ``system_attrs`` on it and return
    its id; None when every one was taken. (Optuna has no public "pop a queued trial only"
    call: `ask` would sample a new one.) On SQLite and PostgreSQL a claim is one transaction
    (Optuna's calls would take three)."""
    storage = study._storage
    backend = rdb_of(storage, upserts=True)
    user_attrs, system_attrs = user_attrs or {}, system_attrs or {}
    for waiting_id in waiting:
        if backend is not None:
            if claim_row(backend, waiting_id, user_attrs, system_attrs):
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


def adopt_trial(study: optuna.Study, frozen: FrozenTrial) -> None:
    """Make Optuna's cache in front of an RDB storage know a trial this process claimed (as
    just read: ``frozen``), as it does for a trial this process creates (`create_new_trial`):
    its `set_trial_param` looks the trial up there, and the cache would otherwise learn of it
    only by reading every unfinished trial of the study again."""
    storage = study._storage
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


class StudyReads:
    """A worker's reads of ``study``: straight from the database on RDB storages, through
    Optuna otherwise."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.rdb = rdb_of(study._storage)
        self.study_id = study._study_id

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
            return self.study._storage.get_trial(trial_id)
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
            return [t._trial_id for t in self.study.get_trials(
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
        the storage cannot select by hash (then :class:`~nas.search.execution.twins.TwinIndex`)."""
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


@functools.lru_cache(maxsize=4096)
def _distribution(text: str) -> BaseDistribution:
    return json_to_distribution(text)


def trial_as_read(trial: FrozenTrial, params: bool, keys: Collection[str] | None) -> FrozenTrial:
    """``trial`` as :func:`read_trials` reads it with ``params`` and ``keys``."""
    if params and keys is None:
        return trial
    return FrozenTrial(
        number=trial.number, state=trial.state, value=None, values=trial.values,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        params=trial.params if params else {},
        distributions=trial.distributions if params else {},
        user_attrs=_only(trial.user_attrs, keys), system_attrs=_only(trial.system_attrs, keys),
        intermediate_values=trial.intermediate_values if params else {},
        trial_id=trial._trial_id)


def _only(attrs: dict[str, Any], keys: Collection[str] | None) -> dict[str, Any]:
    return attrs if keys is None else {k: v for k, v in attrs.items() if k in keys}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside (as it was after): while a study's
    trials are built, every few hundred new objects make it rescan all those built so far,
    which are garbage-free and all kept (a fifth of `study status` at 100k trials)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@gc_paused()
def read_trials(storage: RDBStorage, study_id: int, params: bool = True,
                keys: Collection[str] | None = None, states: Collection[TrialState] | None = None,
                ids: Collection[int] | None = None, from_number: int = 0) -> list[FrozenTrial]:
    """The trials of a study in an RDB storage, as Optuna's own storage builds them, read
    with one query per table: every trial, or those in ``states`` / with trial ids ``ids`` /
    numbered ``from_number`` or above (without ``params``: no parameters or intermediate
    values; with ``keys``: only those user and system attrs)."""
    t = models.TrialModel.__table__.c
    values: dict[int, dict[int, float]] = defaultdict(dict)
    chosen: dict[int, list[tuple[str, float, str]]] = defaultdict(list)
    user: dict[int, dict[str, Any]] = defaultdict(dict)
    system: dict[int, dict[str, Any]] = defaultdict(dict)
    steps: dict[int, dict[int, float]] = defaultdict(dict)
    value_of = models.TrialValueModel.stored_repr_to_value
    step_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    with storage.engine.connect() as db:
        chosen_trials = [t.study_id == study_id]
        if states is not None:
            chosen_trials.append(t.state.in_(list(states)))
        if ids is not None:
            chosen_trials.append(t.trial_id.in_(sorted(ids)))
        if from_number:
            chosen_trials.append(t.number >= from_number)
        every = len(chosen_trials) == 1 and db.execute(
            select(func.count()).select_from(models.StudyModel)).scalar_one() == 1
        trial_ids = select(t.trial_id).where(*chosen_trials).scalar_subquery()

        def in_study(column: Any) -> Any:
            # Rows are looked up by the chosen trials' ids, so others are ignored anyway: the
            # filter only spares reading them, which costs more when there are none.
            return true() if every else column.in_(trial_ids)

        # Sorted here, not by ORDER BY: for it SQLite (no statistics) walks the study's whole
        # trial_id index rather than skipnas_trial_state (21 ms for the RUNNING trials of a
        # study of 100k, where a worker reads them several times a trial; 0.1 ms this way).
        rows = sorted(_plain_rows(db, select(t.trial_id, t.number, t.state, t.datetime_start,
                                             t.datetime_complete).where(*chosen_trials)),
                      key=itemgetter(0))
        if not rows:  # nothing else to read (a worker's lookups often find nothing)
            return []
        v = models.TrialValueModel.__table__.c
        value_type = models.TrialValueModel.TrialValueType
        for trial_id, objective, value, kind in _plain_rows(db, select(
                v.trial_id, v.objective, v.value, v.value_type).where(in_study(v.trial_id))):
            values[trial_id][objective] = value_of(value, value_type[kind])
        p = models.TrialParamModel.__table__.c
        for trial_id, name, value, dist in _plain_rows(db, select(
                p.trial_id, p.param_name, p.param_value, p.distribution_json)
                .where(in_study(p.trial_id)).order_by(p.param_id)) if params else ():
            chosen[trial_id].append((name, value, dist))
        for model, into in ((models.TrialUserAttributeModel, user),
                            (models.TrialSystemAttributeModel, system)):
            a = model.__table__.c
            query = select(a.trial_id, a.key, a.value_json).where(in_study(a.trial_id))
            if keys is not None:
                query = query.where(a.key.in_(sorted(keys)))
            attrs = _plain_rows(db, query)
            for (trial_id, key, _), value in zip(attrs, _parsed(text for *_, text in attrs),
                                                 strict=True):
                into[trial_id][key] = value
        iv = models.TrialIntermediateValueModel.__table__.c
        step_type = models.TrialIntermediateValueModel.TrialIntermediateValueType
        for trial_id, step, value, kind in _plain_rows(db, select(
                iv.trial_id, iv.step, iv.intermediate_value, iv.intermediate_value_type)
                .where(in_study(iv.trial_id))) if params else ():
            steps[trial_id][step] = step_of(value, step_type[kind])
    return [_frozen(row, values[row[0]], chosen[row[0]], user[row[0]], system[row[0]],
                    steps[row[0]]) for row in rows]


def _parsed(texts: Iterable[str], chunk: int = 10_000) -> Iterator[Any]:
    """The JSON values of ``texts``, parsed a chunk at a time as one JSON array (one call of
    the C parser per chunk rather than one per value: 100k trials' attrs in 0.2 s, not 2 s)."""
    it = iter(texts)
    while batch := list(itertools.islice(it, chunk)):
        yield from json.loads("[" + ",".join(batch) + "]")


def _plain_rows(db: Connection, query: Select[Any]) -> Sequence[Any]:
    """The rows of ``query`` as the database driver returns them: numbers, strings (enums as
    their names) and, but on SQLite (text), datetimes. SQLAlchemy's row objects would cost
    more than the read itself here."""
    result = db.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _frozen(row: Sequence[Any], values: dict[int, float], params: list[tuple[str, float, str]],
            user: dict[str, Any], system: dict[str, Any],
            steps: dict[int, float]) -> FrozenTrial:
    trial_id, number, state, start, complete = row
    dists = {name: _distribution(text) for name, _, text in params}
    return FrozenTrial(
        number=number, state=TrialState[state], value=None,
        values=[values[k] for k in range(len(values))] if values else None,
        datetime_start=from_stored(start), datetime_complete=from_stored(complete),
        params={name: dists[name].to_external_repr(value) for name, value, _ in params},
        distributions=dists, user_attrs=user, system_attrs=system,
        intermediate_values=steps, trial_id=trial_id)
