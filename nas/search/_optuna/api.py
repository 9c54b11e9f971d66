"""Optuna's private API on its objects: studies, trials and their storages, pinned to the
Optuna these calls were checked against (TESTED_WITH: a storage refuses to open under another,
and tests/test_structure.py checks each call against the installed one)."""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from ...errors import UserError
from .rdb import finish_row, rdb_of, write_params, write_user_attrs

TESTED_WITH = "5.0"  # the Optuna release these calls were checked against (major.minor)
FIXED_PARAMS = "fixed_params"  # the system attr Optuna's enqueue_trial sets (params: none here)


def check_optuna() -> None:
    """Refuse, in one line, an Optuna whose release is not :data:`TESTED_WITH` (its private
    calls here may have moved)."""
    installed = optuna.__version__
    if installed.split(".")[:2] != TESTED_WITH.split("."):
        major, minor = TESTED_WITH.split(".")
        raise UserError(f"Optuna {installed} is installed, but skipnas was tested with Optuna "
                        f"{TESTED_WITH}.x (it uses Optuna's private API): pip install "
                        f"'optuna>={TESTED_WITH},<{major}.{int(minor) + 1}'")


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage


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
        if (backend := rdb_of(study._storage, upserts=True)) is not None:
            finish_row(backend, frozen._trial_id, state, values)
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


def set_user_attrs(trial: Any, attrs: dict[str, Any]) -> None:
    """Store ``attrs`` as user attrs of a live trial in one transaction on SQLite and
    PostgreSQL (Optuna commits each attr apart: about 6 ms a commit on SQLite, a trial's record
    has ~20). Any other trial (another storage, a test double) gets them one `set_user_attr`
    at a time."""
    backend = rdb_of(trial.storage, upserts=True) if isinstance(trial, optuna.Trial) else None
    if backend is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    if not attrs:
        return
    write_user_attrs(backend, trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)


class _ParamsHeld:
    """A trial's storage that holds back `set_trial_param` (everything else passes through)."""

    def __init__(self, storage: BaseStorage):
        self._storage = storage
        # (name, internal value, distribution) of each param suggested
        self.held: list[tuple[str, float, BaseDistribution]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self.held.append((param_name, param_value_internal, distribution))


@contextlib.contextmanager
def params_in_one_transaction(trial: optuna.Trial) -> Iterator[None]:
    """Inside, the params a live trial suggests on an RDB storage are written together, in one
    transaction, when the block ends (Optuna commits each as it is suggested: about 10 ms a
    commit on SQLite, and a pattern has tens of keys). A block left by an error still writes
    the params suggested before it; one left by an interrupt (KeyboardInterrupt) does not, the
    trial being given back."""
    storage = trial.storage
    backend = rdb_of(storage, upserts=True)
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
            write_params(backend, trial._trial_id, held.held, known)
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


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the calls inside (TPE's multivariate and
    constant-liar options and metric names are marked experimental; they are the design here),
    and only there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
