"""A read-only copy of one study, read in one pass: what `study status`, `analyze`, `report`
and `export` read. Optuna's RDB storage builds every trial through the ORM and parses each
parameter's distribution JSON again, once per call of ``get_trials`` (about 1 s per 1000 trials
here, and several calls a command); this reads the same tables with one plain query each, parses
each distinct distribution once, and serves every later ``get_trials`` from memory."""
from __future__ import annotations

import contextlib
import copy
import functools
import gc
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Select, func, select, true

from ..errors import UserError
from .optuna_api import backend_of, storage_of


def load_snapshot(name: str, storage_url: str, params: bool = True,
                  keys: Collection[str] | None = None) -> optuna.Study:
    """The stored study ``name`` as a read-only snapshot (clear errors as ``load_study``).
    Without ``params`` its trials carry no parameters or intermediate values (what status and
    the analysis read: records, values, states and times), half the rows to read. With
    ``keys`` they carry only those user and system attrs (status leaves out specs and curves)."""
    from .storage import load_study

    live = load_study(name, storage_url)
    return optuna.Study(study_name=name,
                        storage=SnapshotStorage(storage_of(live), name, params=params,
                                                keys=keys))


def snapshot_source(study: optuna.Study) -> BaseStorage:
    """The storage a snapshot was read from (to read a trial again whole, say)."""
    snapshot = storage_of(study)
    if not isinstance(snapshot, SnapshotStorage):
        raise TypeError(f"study {study.study_name!r} is not a snapshot")
    return snapshot._source


class SnapshotStorage(BaseStorage):
    """One study of ``source`` as it was when read; writing to it is an error."""

    def __init__(self, source: BaseStorage, study_name: str, params: bool = True,
                 keys: Collection[str] | None = None):
        self._name = study_name
        self._source = source
        self._id = source.get_study_id_from_name(study_name)
        self._directions = source.get_study_directions(self._id)
        self._user_attrs = source.get_study_user_attrs(self._id)
        self._system_attrs = source.get_study_system_attrs(self._id)
        rdb = rdb_backend(source)
        if rdb is not None:
            self._trials = read_trials(rdb, self._id, params, keys)
        else:  # a journal or a proxy: Optuna's own trials, cut to what was asked
            self._trials = [trial_as_read(t, params, keys)
                            for t in source.get_all_trials(self._id, deepcopy=False)]
        self._by_id = {t._trial_id: t for t in self._trials}

    # -- what a study reads
    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._check(study_id)
        trials = self._trials if states is None else [t for t in self._trials
                                                       if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id not in self._by_id:
            raise KeyError(f"no trial {trial_id} in the snapshot of {self._name!r}")
        return self._by_id[trial_id]

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name != self._name:
            raise KeyError(f"the snapshot holds study {self._name!r} only")
        return self._id

    def get_study_name_from_id(self, study_id: int) -> str:
        self._check(study_id)
        return self._name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        self._check(study_id)
        return list(self._directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        self._check(study_id)
        return dict(self._user_attrs)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        self._check(study_id)
        return dict(self._system_attrs)

    def get_all_studies(self) -> list[FrozenStudy]:
        return [FrozenStudy(self._name, None, self._user_attrs, self._system_attrs, self._id,
                            directions=self._directions)]

    def _check(self, study_id: int) -> None:
        if study_id != self._id:
            raise KeyError(f"the snapshot holds study {self._name!r} only")

    # -- writes: a snapshot is read-only
    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise UserError(f"study {self._name!r} was opened read-only here (a snapshot); "
                        f"nothing was written")

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only
    create_new_trial = set_trial_param = set_trial_state_values = _read_only
    set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _read_only


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under Optuna's cache wrapper, if it is one."""
    inner = backend_of(storage)
    return inner if isinstance(inner, RDBStorage) else None


def _local(stored: datetime | str | None) -> datetime | None:
    """A stored naive UTC time (SQLite's driver reads it as text) as Optuna's storage returns
    it: naive local time."""
    if isinstance(stored, str):
        stored = datetime.fromisoformat(stored)
    if stored is None or (time.timezone == 0 and not time.daylight):  # servers, containers
        return stored
    return stored.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


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
        datetime_start=_local(start), datetime_complete=_local(complete),
        params={name: dists[name].to_external_repr(value) for name, value, _ in params},
        distributions=dists, user_attrs=user, system_attrs=system,
        intermediate_values=steps, trial_id=trial_id)
