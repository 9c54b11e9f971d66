"""The trial record: what every skipnas trial stores in its Optuna user attrs, named once.

Workers write it a part at a time as the trial goes (its slot when queued, its pattern before
training, its outcome after), each part in one transaction; analysis, reports, export and the
benchmark table read it back with :meth:`TrialRecord.from_trial`. A misspelt field fails at
once instead of writing or reading a key nobody else uses. A completed trial is read as a
:class:`TrialRow`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from search_spaces import Pattern, reads_of_input

from ..engine.spec import PATTERN_KEYS
from ._optuna.api import set_user_attrs, storage_of, trial_id
from ._optuna.rdb import label_trials, rdb_of

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


class _Settable(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


# What records, stored configs and analyses written before these fields existed meant.
OLD_STYLE, OLD_BUDGET_MODE, OLD_BLOCK_OUTPUT = "per_block", "exact", "template"


class SlotKind(StrEnum):
    """What a trial's slot is for. Search, noise and baseline trials run at the study's own
    fidelity and make up the search's evidence; confirm trials re-train chosen patterns apart
    from it (more seeds, maybe a higher fidelity) and never enter the search's analysis or
    sampler."""
    SEARCH = "search"        # the sampler proposes the pattern
    BASELINE = "baseline"    # a template beside the search
    BENCH = "bench"          # a benchmark's pattern and seed
    NOISE = "noise"          # a completed search pattern trained again with another seed
    CONFIRM = "confirm"      # a chosen pattern (or template) re-trained by `skipnas confirm`
    FIDELITY = "fidelity"    # a pattern trained at one level of `skipnas fidelity`


@dataclass(frozen=True)
class TrialRecord:
    # The slot, set when the trial is queued.
    slot: str | None = None                # a SlotKind; None on baselines (see `kind`)
    baseline: str | None = None            # the template a baseline (or confirm) trial trains
    seed: int | None = None                # training seed (baselines: set when queued)
    budget_mode: str | None = None         # baselines: "exact" or "authors" (None: exact)
    style: str | None = None               # network style (baselines: set when queued)
    block_output: str | None = None        # baselines: "template" or "all" (None: template)
    pattern: dict[str, Any] | None = None  # bench/noise/confirm slots: the pattern (to_dict)
    fidelity: dict[str, Any] | None = None  # confirm/fidelity slots: the Fidelity they train at
    repeat_of: int | None = None           # noise/confirm: the search trial whose pattern it is
    # The pattern, set before training.
    spec: dict[str, Any] | None = None     # the pattern spec JSON (see PatternSpec)
    hash: str | None = None
    connections: int | None = None
    mbd: int | None = None
    mean_distance: float | None = None
    params: int | None = None
    flops: int | None = None
    device: str | None = None
    threads: int | None = None             # CPU threads it trained on (CPU trials)
    worker: str | None = None              # "host:pid" of the worker that claimed it
    # The outcome.
    reused_from: int | None = None         # number of the completed twin whose result it reuses
    train_seconds: float | None = None
    val_curve: list[float] | None = None
    test_accuracy: float | None = None     # fidelity slots scored on the test split
    loss_curve: list[float] | None = None
    images_per_second: float | None = None
    status: str | None = None              # the trainer's: "ok" or "diverged"
    fail_reason: str | None = None         # why a trial was recorded FAIL
    requeued: bool | None = None           # FAIL whose slot was queued again (interrupted)

    @classmethod
    def from_trial(cls, trial: _HasUserAttrs) -> "TrialRecord":
        """The record of a trial (a FrozenTrial, or a live Trial); absent fields are None."""
        # Filled in without __init__, which sets a frozen dataclass's fields one
        # object.__setattr__ at a time: status and analysis read 100k records, some twice
        # (10 us a record that way, 4 us this way).
        record = object.__new__(cls)
        record.__dict__.update(_UNSET)
        record.__dict__.update({k: v for k, v in trial.user_attrs.items() if k in _FIELD_SET})
        return record

    def to_user_attrs(self) -> dict[str, Any]:
        """The fields that are set, as Optuna user attrs."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def queued(self) -> "TrialRecord":
        """The record as its slot was queued (:data:`QUEUED_FIELDS` of its kind). A slot queued
        again (requeue) starts from this."""
        return TrialRecord(**{k: getattr(self, k) for k in QUEUED_FIELDS[self.kind]})

    @property
    def kind(self) -> SlotKind:
        """The slot's kind; records from before the kinds were stored are decoded here, once:
        a baseline has no ``slot`` and a template name, anything else without one searched."""
        if self.slot in (SlotKind.BENCH, SlotKind.NOISE, SlotKind.CONFIRM, SlotKind.FIDELITY):
            return SlotKind(self.slot)
        if self.baseline is not None:
            return SlotKind.BASELINE
        return SlotKind.SEARCH

    @property
    def role(self) -> str:
        """What the trial is, as every place that shows a trial names it (:func:`role_of`)."""
        return role_of(self.kind, self.baseline)

    @property
    def budget(self) -> str:
        """A baseline's budget mode; slots queued before modes were stored were "exact"."""
        return self.budget_mode or OLD_BUDGET_MODE

    @property
    def output(self) -> str:
        """A baseline's block output convention; before conventions were stored: "template"."""
        return self.block_output or OLD_BLOCK_OUTPUT

    def style_in(self, space_style: str) -> str:
        """The trial's network style; slots queued before styles were stored had the space's."""
        return self.style or space_style

    @property
    def is_baseline(self) -> bool:
        return self.kind == SlotKind.BASELINE

    @property
    def is_confirm(self) -> bool:
        return self.kind == SlotKind.CONFIRM

    @property
    def is_apart(self) -> bool:
        """Trained apart from the search (confirm, fidelity): never in its analysis."""
        return self.kind in (SlotKind.CONFIRM, SlotKind.FIDELITY)

    @property
    def is_reused(self) -> bool:
        return self.reused_from is not None

    def trained_pattern(self) -> Pattern | None:
        """The pattern the trial trains: its spec's, else its slot's (None: neither is
        recorded)."""
        if self.spec is not None:
            return Pattern.from_dict({k: self.spec[k] for k in PATTERN_KEYS if k in self.spec})
        return None if self.pattern is None else Pattern.from_dict(self.pattern)


ROLE_ATTR = "role"
"""The user attr that holds a trial's :attr:`TrialRecord.role` for the dashboard's trial table
(derived, not a record field: old trials have none and are read the same)."""


def role_of(kind: SlotKind, template: str | None) -> str:
    """A trial's role: its slot's kind, with the template a baseline or confirm trial trains
    ("search", "noise", "baseline:log", "confirm:nearest", "confirm" for a searched pattern
    confirmed, "fidelity", "bench")."""
    if template and kind in (SlotKind.BASELINE, SlotKind.CONFIRM):
        return f"{kind}:{template}"
    return str(kind)


def store_roles(study: "optuna.Study") -> int:
    """Store :data:`ROLE_ATTR` on each trial of ``study`` that lacks it (recorded before workers
    stored it), finished ones too, so the dashboard's trial table can show and filter it; on
    SQLite and PostgreSQL only (elsewhere roles are derived where a trial is shown). Returns
    how many it stored."""
    backend = rdb_of(storage_of(study), upserts=True)
    if backend is None:
        return 0
    missing = {trial_id(t): TrialRecord.from_trial(t).role
               for t in study.get_trials(deepcopy=False) if ROLE_ATTR not in t.user_attrs}
    label_trials(backend, ROLE_ATTR, missing)
    return len(missing)


FIELDS = tuple(f.name for f in dataclasses.fields(TrialRecord))
_FIELD_SET = frozenset(FIELDS)
# A record of a trial that stores nothing (the fields' defaults), for `from_trial`.
_UNSET = {f.name: f.default for f in dataclasses.fields(TrialRecord)}

# What each kind of slot knows when it is queued (a noise slot learns its pattern when it runs).
QUEUED_FIELDS: dict[SlotKind, tuple[str, ...]] = {
    SlotKind.SEARCH: ("slot",),
    SlotKind.BASELINE: ("slot", "baseline", "seed", "budget_mode", "style", "block_output"),
    SlotKind.BENCH: ("slot", "pattern", "hash", "seed"),
    SlotKind.NOISE: ("slot", "seed"),
    SlotKind.CONFIRM: ("slot", "baseline", "pattern", "hash", "seed", "fidelity", "repeat_of"),
    SlotKind.FIDELITY: ("slot", "baseline", "pattern", "hash", "seed", "fidelity"),
}


def record(trial: _Settable, **fields: Any) -> None:
    """Store some fields of a trial's record now, together (validated: an unknown name
    raises)."""
    set_user_attrs(trial, TrialRecord(**fields).to_user_attrs())


def record_with_role(trial: _Settable, role: str, **fields: Any) -> None:
    """:func:`record`, with the trial's :data:`ROLE_ATTR` in the same write."""
    set_user_attrs(trial, {**TrialRecord(**fields).to_user_attrs(), ROLE_ATTR: role})


@dataclass(frozen=True)
class TrialRow:
    """A completed trial with a pattern, as the analysis, the report and the benchmark table
    read it: its accuracy and its pattern's metrics, old slots' defaults decoded."""
    trial: int
    accuracy: float
    template: str                 # the baseline's template; "" for other trials
    style: str
    budget_mode: str              # baselines: "exact" or "authors"; "" for other trials
    block_output: str             # baselines: "template" or "all"; "" for other trials
    hash: str
    seed: int | None
    connections: int | None
    mbd: int | None
    mean_distance: float | None
    reads_of_input: int | None    # nodes that read their block's input; None: no pattern stored
    params: int | None
    flops: int | None
    train_seconds: float | None

    @classmethod
    def from_trial(cls, trial: FrozenTrial, space_style: str) -> "TrialRow":
        """The row of a completed trial whose pattern is recorded, in a search space of
        ``space_style``."""
        r = TrialRecord.from_trial(trial)
        assert r.hash is not None, f"trial {trial.number} has no pattern"
        pattern = r.trained_pattern()
        return cls(trial=trial.number, accuracy=trial.values[0], template=r.baseline or "",
                   style=r.style_in(space_style), budget_mode=r.budget if r.baseline else "",
                   block_output=r.output if r.baseline else "", hash=r.hash, seed=r.seed,
                   connections=r.connections, mbd=r.mbd, mean_distance=r.mean_distance,
                   reads_of_input=None if pattern is None else reads_of_input(pattern),
                   params=r.params, flops=r.flops, train_seconds=r.train_seconds)

    def to_json(self) -> dict[str, Any]:
        """Its fields by name, in order."""
        return dataclasses.asdict(self)
