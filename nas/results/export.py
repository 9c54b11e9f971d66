"""Export: the pattern spec of a study's best (or a chosen) trial, ready for full training."""
from __future__ import annotations

from dataclasses import replace

from optuna.trial import TrialState

from ..engine.spec import PatternSpec
from ..errors import UserError
from ..search.record import TrialRecord
from ..search.storage import load_study
from ..search.study import best_trial


def trial_spec(name: str, storage_url: str, number: int | None = None) -> PatternSpec:
    """The pattern spec of trial ``number``, or of the best completed trial."""
    study = load_study(name, storage_url)
    if number is None:
        trial = best_trial(study)
        if trial is None:
            raise UserError(f"study {name!r} has no completed trial to export")
    else:
        trial = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                      if t.number == number and TrialRecord.from_trial(t).spec is not None), None)
        if trial is None:
            states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
            raise UserError(f"trial {number} of {name!r} is "
                            f"{states.get(number, 'not in the study')}, not a completed trial")
    spec = PatternSpec.from_dict(TrialRecord.from_trial(trial).spec, f"trial {trial.number}")
    return replace(spec, origin={**spec.origin, "study": name, "trial": trial.number,
                                 "accuracy": trial.values[0]})
