"""Optuna studies over budgeted pattern spaces: create or resume (one WAITING trial queued per
slot the config asks for and the study lacks: :mod:`nas.search.slots`), the best trial, status.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from ...errors import UserError
from .._optuna.api import experimental_ok
from .._optuna.reads import StudyReads, gc_paused
from .._optuna.schema import ensure_indexes
from .._optuna.snapshot import source_trial
from ..config import (
    CONFIG_ATTR,
    StudyConfig,
    check_config,
    check_study_size,
    config_summary,
    search_fidelity,
    stored_config,
)
from ..record import TrialRecord
from ..slots import enqueue_missing
from ..storage.backends import load_snapshot, open_storage
from ..storage.locks import exclusive
from ..storage.urls import mask_url
from ..strategy.samplers import make_pruner, make_sampler
from .evidence import Evidence, Recorded, evidence, recorded


def create_study(cfg: StudyConfig, seed: int | None = None,
                 storage: optuna.storages.BaseStorage | None = None,
                 progress: bool = False) -> optuna.Study:
    """Create the study (or load it) and enqueue the trials still missing from the config
    (``progress``: a bar while a large queue is written)."""
    check_study_size(cfg)
    storage = storage or open_storage(cfg.storage_url)
    directions: list[Literal["maximize", "minimize"]] = (
        ["maximize", "minimize"] if cfg.multi_objective else ["maximize"])
    with exclusive(cfg.storage_url, storage, cfg.name):  # concurrent starts queue slots once
        ensure_indexes(storage)
        study = optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True,
                                    directions=directions,
                                    sampler=make_sampler(cfg.search_space.build(), cfg.sampler,
                                                         cfg.seed if seed is None else seed),
                                    pruner=make_pruner(cfg.pruner, cfg.training.epochs))
        if [d.name.lower() for d in study.directions] != directions:
            raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage_url)} has directions "
                            f"{[d.name.lower() for d in study.directions]}, "
                            f"the config asks {directions}")
        if stored_config(study) is None:
            study.set_user_attr(CONFIG_ATTR, config_summary(cfg, cfg.search_space.build()))
        check_config(study, cfg)
        if study.metric_names != cfg.metric_names:  # studies made before names were stored
            with experimental_ok():
                study.set_metric_names(cfg.metric_names)
        enqueue_missing(study, cfg, progress)
    return study


def queued_trials(study: optuna.Study) -> int:
    """How many trials of ``study`` wait for a worker (counted, not read)."""
    return StudyReads(study).state_counts().get(TrialState.WAITING, 0)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The search's best single run: the completed trial with the highest accuracy (the first
    objective), confirm trials apart (Optuna's own `best_trial` may be a confirm run, at
    another fidelity)."""
    return best_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_of(complete: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """:func:`best_trial` among the completed trials ``complete``."""
    # Most accurate first, the first with a pattern that is no confirm run: records are read
    # for the few at the top only (a study of 100k trials).
    for t in sorted(complete, key=lambda t: t.values[0], reverse=True):
        if (r := TrialRecord.from_trial(t)).hash is not None and not r.is_apart:
            return t
    return None


def study_evidence(study: optuna.Study, complete: Recorded | None = None) -> Evidence:
    """The study's noise, best single run and confirmed patterns (:mod:`.evidence`;
    ``complete``: its completed trials with their records, when already read)."""
    return evidence(study, search_fidelity(study), complete)


@dataclass(frozen=True)
class TopTrial:
    """The best trial as status shows it."""
    number: int
    role: str                      # TrialRecord.role: "search", "baseline:nearest", ...
    accuracy: float
    hash: str | None
    connections: int | None
    mbd: int | None


@dataclass(frozen=True)
class StudyStatus:
    """Counts by state, the best trial, an ETA for the queued trials, and the evidence."""
    study: str
    storage: str                   # the URL, password masked
    counts: dict[str, int]         # trials by state name, every state in TrialState's order
    best: TopTrial | None          # None: no completed trial
    seconds_per_trial: float | None  # mean over completed trials (None: none timed)
    eta_seconds: float | None
    reused: int                    # completed trials that reuse a twin's result
    evidence: Evidence

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the evidence as :meth:`Evidence.to_json` writes it)."""
        return {"study": self.study, "storage": self.storage, "counts": dict(self.counts),
                "best": None if self.best is None else asdict(self.best),
                "seconds_per_trial": self.seconds_per_trial, "eta_seconds": self.eta_seconds,
                "reused": self.reused, "evidence": self.evidence.to_json()}


# The record fields status reads of every trial: kinds, patterns, seeds and fidelities (no
# specs or curves; the best trial is read again whole, for its connections and MBD).
STATUS_FIELDS = ("slot", "baseline", "seed", "fidelity", "repeat_of", "hash", "reused_from")


@gc_paused()  # 100k records and runs are built here too: garbage-free, all kept to the end
def study_status(name: str, storage_url: str) -> StudyStatus:
    """The status of a stored study: counts by state, the best trial, an ETA for the queued
    trials, and its :class:`Evidence`."""
    study = load_snapshot(name, storage_url, params=False, keys=STATUS_FIELDS)
    trials = study.get_trials(deepcopy=False)
    by_state = Counter(t.state for t in trials)
    counts = {s.name: by_state[s] for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete
                 if t.datetime_start and t.datetime_complete]
    per_trial = sum(durations) / len(durations) if durations else None
    workers = max(1, counts["RUNNING"])
    eta = (per_trial * (counts["WAITING"] + counts["RUNNING"]) / workers
           if per_trial is not None else None)
    best = None
    top = best_trial(study)
    if top is not None:
        r = TrialRecord.from_trial(source_trial(study, top))
        best = TopTrial(top.number, r.role, top.values[0], r.hash, r.connections, r.mbd)
    records = recorded(complete)
    return StudyStatus(name, mask_url(storage_url), counts, best, per_trial, eta,
                       sum(1 for _, r in records if r.is_reused),
                       study_evidence(study, records))
