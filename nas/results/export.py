"""Export: the pattern spec to train fully, chosen by the strongest evidence the study holds:
the confirmed pattern with the best mean over seeds, else (said so) the best single run, or a
trial chosen by number."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..engine.spec import PatternSpec
from ..errors import UserError
from ..search.experiment.evidence import Confirmed, Evidence, Pick, answer
from ..search.experiment.study import best_trial, study_evidence
from ..search.record import TrialRecord
from ..search.storage.backends import read_study


@dataclass(frozen=True)
class Exported:
    spec: PatternSpec
    note: str              # one line: what the choice rests on


class Choice(StrEnum):
    """Which confirmed pattern `skipnas export` writes (`--pattern`)."""
    WINNER = "winner"                  # the best confirmed mean
    BEST_TEMPLATE = "best-template"    # the confirmed template with the best mean
    ANSWER = "answer"                  # the pattern the answer says to train


def trial_spec(name: str, storage_url: str, number: int | None = None,
               choice: Choice = Choice.WINNER) -> Exported:
    """The pattern spec of trial ``number``; without one, of the confirmed pattern ``choice``
    names, or (when nothing is confirmed) of the best single run. The note ends with which
    pattern to train."""
    study = read_study(name, storage_url)
    if number is not None:
        trial = _completed(study, number)
        spec = _spec(trial, {"study": name, "trial": number, "accuracy": trial.values[0]})
        return Exported(spec, f"trial {number} as asked: one run, accuracy "
                              f"{trial.values[0]:.4f}")
    ev = study_evidence(study)
    said = answer(ev)
    chosen = ev.winner
    if choice == Choice.BEST_TEMPLATE:
        chosen = next((c for c in ev.confirmed if c.label != "search"), None)
        if chosen is None:
            raise UserError(f"study {name!r} has no confirmed template to export "
                            f"(`skipnas confirm CONFIG` confirms the templates it trained)")
    elif choice == Choice.ANSWER and said.pick in (Pick.TEMPLATE, Pick.SEARCHED):
        chosen = next(c for c in ev.confirmed if c.hash == said.hash)
    if chosen is not None:
        return _confirmed(study, name, ev, chosen, said.sentence)
    best = best_trial(study)
    if best is None:
        raise UserError(f"study {name!r} has no completed trial to export")
    spec = _spec(best, {"study": name, "trial": best.number, "accuracy": best.values[0]})
    se = "" if not ev.noise.measured else f", SE {ev.noise.seed_std:.4f}"
    then = (f"{ev.confirm_pending} confirm trials are still queued or running: `skipnas "
            f"confirm CONFIG` finishes them" if ev.confirm_pending else
            "`skipnas confirm CONFIG` re-trains the top patterns and log with more seeds")
    return Exported(spec, f"the pick is a single unconfirmed run (trial {best.number}, accuracy "
                          f"{best.values[0]:.4f}{se}); {then}\nanswer: {said.sentence}")


def _confirmed(study: optuna.Study, name: str, ev: Evidence, w: Confirmed,
               said: str) -> Exported:
    m = w.mean
    confirmed: dict[str, Any] = {
        "mean": m.mean.value, **m.mean.ci_json(), "std": m.std, "seeds": m.n,
        "accuracies": list(w.accuracies), "fidelity": ev.confirm_fidelity,
        "brief_accuracy": None if math.isnan(w.brief) else w.brief}
    if w.vs_log is not None and w.vs_log_adjusted is not None:
        d, a = w.vs_log.diff, w.vs_log_adjusted.diff
        confirmed["vs_log"] = {"diff": d.value, **d.ci_json(),
                               "holm_ci_low": a.low, "holm_ci_high": a.high,
                               "compared": len(ev.confirmed) - 1}
    trial = _completed(study, w.trial)
    origin = {"study": name, "trial": w.repeat_of if w.repeat_of is not None else w.trial,
              "accuracy": m.mean.value, "confirmed": confirmed}
    spec = _spec(trial, origin, drop=("seed",))
    vs = "" if w.vs_log is None else \
        f"; vs log {w.vs_log.diff.value:+.4f} {w.vs_log.diff.interval('+.4f')}"
    return Exported(spec, f"confirmed: {w.name}, mean {m.mean.value:.4f} "
                          f"{m.mean.interval('.4f')} over {m.n} seeds{vs}\nanswer: {said}")


def _completed(study: optuna.Study, number: int) -> FrozenTrial:
    trial = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.number == number and TrialRecord.from_trial(t).spec is not None), None)
    if trial is None:
        states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
        raise UserError(f"trial {number} of {study.study_name!r} is "
                        f"{states.get(number, 'not in the study')}, not a completed trial")
    return trial


def _spec(trial: FrozenTrial, origin: dict[str, Any], drop: tuple[str, ...] = ()) -> PatternSpec:
    spec = PatternSpec.from_dict(TrialRecord.from_trial(trial).spec, f"trial {trial.number}")
    kept = {k: v for k, v in spec.origin.items() if k not in drop}
    return replace(spec, origin={**kept, **origin})
