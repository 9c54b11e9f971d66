"""A read-only copy of one study, read in one pass: what `study status`, `analyze`, `report`
and `export` read. Optuna's RDB storage builds every trial through the ORM and parses each
parameter's distribution JSON again, once per call of ``get_trials`` (about 1 s per 1000 trials
here, and several calls a command); this reads the same tables with one plain query each, parses
each distinct distribution once, and serves every later ``get_trials`` from memory."""
from __future__ import annotations

import copy
from collections.abc import Collection, Container
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from ...errors import UserError
from .rdb import rdb_of
from .reads import read_trials, trial_as_read


def snapshot_of(live: optuna.Study, params: bool = True,
                keys: Collection[str] | None = None) -> optuna.Study:
    """A read-only snapshot of the stored study ``live``. Without ``params`` its trials carry
    no parameters or intermediate values (what status and the analysis read: records, values,
    states and times), half the rows to read. With ``keys`` they carry only those user and
    system attrs (status leaves out specs and curves)."""
    return optuna.Study(study_name=live.study_name,
                        storage=SnapshotStorage(live._storage, live.study_name, params=params,
                                                keys=keys))


def source_trial(snapshot: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """A trial of a snapshot read again, whole, from the storage the snapshot was read from."""
    storage = snapshot._storage
    if not isinstance(storage, SnapshotStorage):
        raise TypeError(f"study {snapshot.study_name!r} is not a snapshot")
    return storage._source.get_trial(trial._trial_id)


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
        rdb = rdb_of(source)
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
