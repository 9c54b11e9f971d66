"""Twins: a trial whose pattern, seed and fidelity another trial already trained (its result is
reused) or is training (it waits, so two workers that drew the same pattern train it once)."""
from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ... import interrupts
from .._optuna.api import storage_of, trial_id
from .._optuna.reads import StudyReads
from ..config import Fidelity
from ..record import TrialRecord
from ..storage.sqlite import liveness_clock
from .liveness import StaleSweep

# The record fields a twin lookup reads (and the twin's curve, which a reusing trial copies).
TWIN_FIELDS = ("hash", "seed", "fidelity", "reused_from", "val_curve", "test_accuracy")


class TwinIndex:
    """A study's completed, trained trials by (pattern hash, seed), for storages that cannot
    select trials by hash (journal files, storage proxies; RDB storages are asked directly,
    `StudyReads.with_hash`). A finished trial never changes, so each look reads the records
    of the trials finished since the last one only."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, study: str | None) -> None:
        self._study = study
        self._seen: set[int] = set()
        self._twins: dict[tuple[str, int | None], list[FrozenTrial]] = {}

    def update(self, study: optuna.Study) -> None:
        """Index the trials of ``study`` completed since the last update."""
        if study.study_name != self._study:
            self._reset(study.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number in self._seen:
                continue
            self._seen.add(t.number)
            r = TrialRecord.from_trial(t)
            if r.hash is not None and not r.is_reused:
                self._twins.setdefault((r.hash, r.seed), []).append(t)

    def lookup(self, study: optuna.Study, pattern_hash: str, seed: int, wanted: dict[str, Any],
               search: dict[str, Any], asking: int | None = None
               ) -> tuple[FrozenTrial | None, list[FrozenTrial]]:
        """On the study as it is now, the lowest-numbered completed trial of this pattern and
        seed at fidelity ``wanted`` (one without a recorded fidelity ran at ``search``), and
        the RUNNING ones, leaving out trial id ``asking`` (the trial that asks): in one read by
        hash where the storage can select by it, else the running trials read first, then
        this index updated (a twin that completes in between is then found complete)."""
        reads = StudyReads(study)
        trials = reads.with_hash(pattern_hash, TWIN_FIELDS,
                                 states=(TrialState.COMPLETE, TrialState.RUNNING),
                                 other_than=asking)
        if trials is None:
            trials = reads.trials((TrialState.RUNNING,), TWIN_FIELDS)
            self.update(study)
            trials += self._twins.get((pattern_hash, seed), [])
        twins = [t for t in trials if trial_id(t) != asking and
                 (r := TrialRecord.from_trial(t)).hash == pattern_hash and r.seed == seed and
                 not r.is_reused and (r.fidelity or search) == wanted]
        complete = min((t for t in twins if t.state == TrialState.COMPLETE),
                       key=lambda t: t.number, default=None)
        return complete, [t for t in twins if t.state == TrialState.RUNNING]


def completed_twin(study: optuna.Study, pattern_hash: str, seed: int, fidelity: Fidelity,
                   search: Fidelity, before: int | None = None, grace: float = 30.0,
                   poll_seconds: float = 1.0, index: TwinIndex | None = None,
                   asking: int | None = None) -> FrozenTrial | None:
    """A completed trial that trained this pattern with this seed at this fidelity (a trial
    without a recorded fidelity ran at the search's), found through ``index`` (a fresh one
    if not given). A running twin numbered below ``before`` is waited for (two workers that
    drew the same pattern train it once; the lower number trains, so they never wait for
    each other), while stale trials are failed as in the worker loop; None when it fails or
    there is no twin. ``asking``: the trial id of the trial that asks, never its own twin
    (and not read)."""
    wanted, searched = fidelity.to_dict(), search.to_dict()
    index = TwinIndex() if index is None else index
    sweep = StaleSweep(grace, liveness_clock(storage_of(study)))
    while True:
        twin, running = index.lookup(study, pattern_hash, seed, wanted, searched, asking)
        if twin is not None:
            return twin
        if before is None or not any(t.number < before for t in running):
            return None
        interrupts.check()
        time.sleep(poll_seconds)
        sweep(study, storage_of(study))
