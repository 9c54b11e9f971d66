"""The confirm stage: the search's top patterns (and log) re-trained with fresh seeds, maybe at
a higher fidelity, as trials of the same study.

`start_confirm` queues one confirm slot per (pattern, seed) that the study does not hold yet,
then workers run them like any other slot (heartbeats, requeue, resume, exact counts). The
slots are keyed by pattern hash and seed at one fidelity (another is refused), so running it
again never queues a slot twice, and a search extended later adds only its new top patterns.
"""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search_spaces import Pattern

from ...engine.spec import PatternSpec
from ...errors import UserError
from .._optuna.api import storage_of
from ..config import StudyConfig, check_config
from ..record import SlotKind, TrialRecord
from ..slots import baseline_pattern, counts_as_slot, enqueue_slots
from ..storage.backends import load_study
from ..storage.locks import exclusive
from ..storage.urls import mask_url


def confirm_seeds(cfg: StudyConfig) -> list[int]:
    """The seeds of every confirmed pattern: the training seed + 1 .. + ``confirm.seeds``."""
    return [(cfg.training.seed + i) % 2 ** 32 for i in range(1, cfg.confirm.seeds + 1)]


def top_patterns(study: optuna.Study, top: int) -> list[tuple[Pattern, int]]:
    """The ``top`` distinct patterns of the search's trials by their single brief accuracy
    (best first), with the trial each was chosen from."""
    ranked = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_trial(t)
        if r.kind == SlotKind.SEARCH and not r.is_reused and r.spec and r.hash and t.values:
            ranked.append((t.values[0], -t.number, r.hash, r.spec))
    chosen: dict[str, tuple[Pattern, int]] = {}
    for _, minus_number, hash_, spec in sorted(ranked, key=lambda x: (x[0], x[1]),
                                               reverse=True):
        if hash_ not in chosen and len(chosen) < top:
            chosen[hash_] = (PatternSpec.from_dict(spec).pattern, -minus_number)
    return list(chosen.values())


def confirm_slots(study: optuna.Study, cfg: StudyConfig) -> list[TrialRecord]:
    """The confirm slots the config asks of this study: its top patterns and the baseline
    templates, each at every confirm seed and at the confirm fidelity."""
    space = cfg.search_space.build()
    fidelity = cfg.confirm_fidelity.to_dict()
    chosen: dict[str, tuple[Pattern, str | None, int | None]] = {
        p.hash: (p, None, n) for p, n in top_patterns(study, cfg.confirm.top)}
    for template in cfg.confirm_templates:  # a searched pattern that is a template: named so
        p = baseline_pattern(space, template)
        chosen[p.hash] = (p, template, chosen.get(p.hash, (p, None, None))[2])
    return [TrialRecord(slot=SlotKind.CONFIRM, baseline=template, pattern=p.to_dict(),
                        hash=p.hash, seed=s, fidelity=fidelity, repeat_of=number)
            for p, template, number in chosen.values() for s in confirm_seeds(cfg)]


def start_confirm(cfg: StudyConfig) -> tuple[optuna.Study, int]:
    """Queue the missing confirm slots of ``cfg``'s study; returns the study and how many were
    queued. The search must be finished, and earlier confirm trials at the same fidelity."""
    study = load_study(cfg.name, cfg.storage_url)
    check_config(study, cfg)
    with exclusive(cfg.storage_url, storage_of(study), cfg.name):  # concurrent calls: once
        return study, _queue_confirm(study, cfg)


def _queue_confirm(study: optuna.Study, cfg: StudyConfig) -> int:
    trials = study.get_trials(deepcopy=False)
    records = [(t, TrialRecord.from_trial(t)) for t in trials if counts_as_slot(t)]
    pending = [t.number for t, r in records
               if t.state in (TrialState.WAITING, TrialState.RUNNING) and not r.is_apart]
    if pending:
        raise UserError(f"study {cfg.name!r}: {len(pending)} search trials are still queued or "
                        f"running; finish the search first (`skipnas study start CONFIG`)")
    fidelity = cfg.confirm_fidelity.to_dict()
    other = {repr(r.fidelity) for _, r in records if r.is_confirm and r.fidelity != fidelity}
    if other:
        raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage_url)} holds confirm "
                        f"trials at another fidelity ({', '.join(sorted(other))}); confirm at "
                        f"that one (the same [confirm] epochs, train_size, val_size) so that "
                        f"their means compare")
    if not top_patterns(study, 1):
        raise UserError(f"study {cfg.name!r} has no completed search trial to confirm")
    have = {(r.hash, r.seed) for _, r in records if r.is_confirm}
    missing = [s for s in confirm_slots(study, cfg) if (s.hash, s.seed) not in have]
    enqueue_slots(study, missing)
    return len(missing)
