"""The trial record: what every skipnas trial stores in its Optuna user attrs, named once.

Workers write it field by field as the trial goes (its slot when queued, its pattern before
training, its outcome after); analysis, reports, export and the benchmark table read it back
with :meth:`TrialRecord.from_trial`. A misspelt field fails at once instead of writing or
reading a key nobody else uses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


class _Settable(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class TrialRecord:
    # The slot, set when the trial is queued.
    slot: str | None = None                # "search" for search-space trials
    baseline: str | None = None            # template name of a baseline trial
    seed: int | None = None                # training seed (baselines: set when queued)
    budget_mode: str | None = None         # baselines: "exact" or "authors" (None: exact)
    style: str | None = None               # network style (baselines: set when queued)
    block_output: str | None = None        # baselines: "template" or "all" (None: template)
    pattern: dict[str, Any] | None = None  # benchmark slots: the pattern to train (to_dict)
    # The pattern, set before training.
    spec: dict[str, Any] | None = None     # the pattern spec JSON (see PatternSpec)
    hash: str | None = None
    connections: int | None = None
    mbd: int | None = None
    mean_distance: float | None = None
    params: int | None = None
    flops: int | None = None
    device: str | None = None
    worker: str | None = None              # "host:pid" of the worker that claimed it
    # The outcome.
    reused_from: int | None = None         # number of the completed twin whose result it reuses
    train_seconds: float | None = None
    val_curve: list[float] | None = None
    loss_curve: list[float] | None = None
    images_per_second: float | None = None
    status: str | None = None              # the trainer's: "ok" or "diverged"
    fail_reason: str | None = None         # why a trial was recorded FAIL
    requeued: bool | None = None           # FAIL whose slot was queued again (interrupted)

    @classmethod
    def from_trial(cls, trial: _HasUserAttrs) -> "TrialRecord":
        """The record of a trial (a FrozenTrial, or a live Trial); absent fields are None."""
        attrs = trial.user_attrs
        return cls(**{k: attrs[k] for k in FIELDS if k in attrs})

    def to_user_attrs(self) -> dict[str, Any]:
        """The fields that are set, as Optuna user attrs."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def queued(self) -> "TrialRecord":
        """The record as its slot was queued: a search slot's kind only; a baseline's template,
        seed, style, budget mode and block output; a benchmark slot's pattern, hash and seed.
        A slot queued again (requeue) starts from this."""
        if self.is_baseline:
            return TrialRecord(slot=self.slot, baseline=self.baseline, seed=self.seed,
                               budget_mode=self.budget_mode, style=self.style,
                               block_output=self.block_output)
        if self.pattern is not None:
            return TrialRecord(slot=self.slot, pattern=self.pattern, hash=self.hash,
                               seed=self.seed)
        return TrialRecord(slot=self.slot)

    @property
    def is_baseline(self) -> bool:
        return self.baseline is not None

    @property
    def is_reused(self) -> bool:
        return self.reused_from is not None


FIELDS = tuple(f.name for f in dataclasses.fields(TrialRecord))


def record(trial: _Settable, **fields: Any) -> None:
    """Store some fields of a trial's record now (validated: an unknown name raises)."""
    for key, value in TrialRecord(**fields).to_user_attrs().items():
        trial.set_user_attr(key, value)
