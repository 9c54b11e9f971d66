"""A read-only copy of one study, read in one pass: what `study status`, `analyze`, `report`
and `export` read. Optuna's RDB storage builds every trial through the ORM and parses each
parameter's distribution JSON again, once per call of ``get_trials`` (about 1 s per 1000 trials
here, and several calls a command); this reads the same tables with one plain query each, parses
each distinct distribution once, and serves every later ``get_trials`` from memory."""
from __future__ import annotations

import copy
import functools
import json
from collections import defaultdict
from collections.abc import Container, Sequence
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select

from ..errors import UserError


def load_snapshot(name: str, storage_url: str, params: bool = True) -> optuna.Study:
    """The stored study ``name`` as a read-only snapshot (clear errors as ``load_study``).
    Without ``params`` its trials carry no parameters or intermediate values (what status and
    the analysis read: records, values, states and times), half the rows to read."""
    from .storage import load_study

    live = load_study(name, storage_url)
    return optuna.Study(study_name=name,
                        storage=SnapshotStorage(live._storage, name, params=params))


class SnapshotStorage(BaseStorage):
    """One study of ``source`` as it was when read; writing to it is an error."""

    def __init__(self, source: BaseStorage, study_name: str, params: bool = True):
        self._name = study_name
        self._id = source.get_study_id_from_name(study_name)
        self._directions = source.get_study_directions(self._id)
        self._user_attrs = source.get_study_user_attrs(self._id)
        self._system_attrs = source.get_study_system_attrs(self._id)
        rdb = _rdb(source)
        self._trials = (read_trials(rdb, self._id, params) if rdb is not None
                        else source.get_all_trials(self._id, deepcopy=False))
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


def _rdb(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under Optuna's cache wrapper, if it is one."""
    inner = getattr(storage, "_backend", storage)
    return inner if isinstance(inner, RDBStorage) else None


def _local(stored: datetime | None) -> datetime | None:
    """A stored naive UTC time as Optuna's storage returns it: naive local time."""
    if stored is None:
        return None
    return stored.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


@functools.lru_cache(maxsize=4096)
def _distribution(text: str) -> BaseDistribution:
    return json_to_distribution(text)


def read_trials(storage: RDBStorage, study_id: int, params: bool = True) -> list[FrozenTrial]:
    """Every trial of a study in an RDB storage, as Optuna's own storage builds them, read
    with one query per table (without ``params``: no parameters or intermediate values)."""
    t = models.TrialModel.__table__.c
    in_study = select(t.trial_id).where(t.study_id == study_id).scalar_subquery()
    values: dict[int, dict[int, float]] = defaultdict(dict)
    chosen: dict[int, list[tuple[str, float, str]]] = defaultdict(list)
    user: dict[int, dict[str, Any]] = defaultdict(dict)
    system: dict[int, dict[str, Any]] = defaultdict(dict)
    steps: dict[int, dict[int, float]] = defaultdict(dict)
    value_of = models.TrialValueModel.stored_repr_to_value
    step_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    with storage.engine.connect() as db:
        rows = db.execute(select(t.trial_id, t.number, t.state, t.datetime_start,
                                 t.datetime_complete).where(t.study_id == study_id)
                          .order_by(t.trial_id)).all()
        v = models.TrialValueModel.__table__.c
        for trial_id, objective, value, kind in db.execute(
                select(v.trial_id, v.objective, v.value, v.value_type)
                .where(v.trial_id.in_(in_study))):
            values[trial_id][objective] = value_of(value, kind)
        p = models.TrialParamModel.__table__.c
        for trial_id, name, value, dist in db.execute(
                select(p.trial_id, p.param_name, p.param_value, p.distribution_json)
                .where(p.trial_id.in_(in_study)).order_by(p.param_id)) if params else ():
            chosen[trial_id].append((name, value, dist))
        for model, into in ((models.TrialUserAttributeModel, user),
                            (models.TrialSystemAttributeModel, system)):
            a = model.__table__.c
            for trial_id, key, text in db.execute(
                    select(a.trial_id, a.key, a.value_json).where(a.trial_id.in_(in_study))):
                into[trial_id][key] = json.loads(text)
        iv = models.TrialIntermediateValueModel.__table__.c
        for trial_id, step, value, kind in db.execute(
                select(iv.trial_id, iv.step, iv.intermediate_value, iv.intermediate_value_type)
                .where(iv.trial_id.in_(in_study))) if params else ():
            steps[trial_id][step] = step_of(value, kind)
    return [_frozen(row, values[row[0]], chosen[row[0]], user[row[0]], system[row[0]],
                    steps[row[0]]) for row in rows]


def _frozen(row: Sequence[Any], values: dict[int, float], params: list[tuple[str, float, str]],
            user: dict[str, Any], system: dict[str, Any],
            steps: dict[int, float]) -> FrozenTrial:
    trial_id, number, state, start, complete = row
    dists = {name: _distribution(text) for name, _, text in params}
    return FrozenTrial(
        number=number, state=state, value=None,
        values=[values[k] for k in range(len(values))] if values else None,
        datetime_start=_local(start), datetime_complete=_local(complete),
        params={name: dists[name].to_external_repr(value) for name, value, _ in params},
        distributions=dists, user_attrs=user, system_attrs=system,
        intermediate_values=steps, trial_id=trial_id)
