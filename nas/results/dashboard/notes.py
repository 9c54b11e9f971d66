"""What the dashboard shows of a study beside Optuna's pages: our plots and a note on the study
(what it is, how far its numbers can be trusted, its config), each top trial's pattern in words,
and the features study NAME.features."""
from __future__ import annotations

import json
import re
from typing import Any

from optuna.trial import TrialState

from ...search import live_trial, trial_id
from ...search.config import stored_config
from ...search.experiment.evidence import answer
from ...search.experiment.study import study_evidence
from ...search.record import TrialRecord, store_roles
from ...search.storage.backends import load_study
from ..analysis import evidence_lines
from ..feature_study import feature_row, feature_rows, features_study
from ..report import figures

# Our plots shown in optuna-dashboard's study page, by figure id (attached under
# "skipnas-<id>", so restarting the dashboard overwrites them rather than adding copies).
# The features' importances are not among them: the page's own Hyperparameter Importance card
# shows them (importances_over_features).
ATTACHED = ("top-1-pattern", "accuracy-vs-mean-distance", "accuracy-vs-mbd",
            "accuracy-vs-params", "confirmed")
NOTED_TRIALS = 5  # the best trials that get a note with their pattern in words (and every
                  # confirm trial)


def config_markdown(config: dict[str, Any]) -> str:
    """The study's stored config as a Markdown table, one setting per row, each shown as
    plain text (a config string may hold a line break or Markdown of its own)."""
    lines = ["| setting | value |", "|---|---|"]
    for section, table in config.items():
        for key, value in table.items():
            shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            lines.append(f"| {plain_markdown(f'{section}.{key}')} | {plain_markdown(shown)} |")
    return "\n".join(lines)


def plain_markdown(text: str) -> str:
    """``text`` as Markdown that renders as that text on one line: line breaks become
    spaces, Markdown's punctuation is escaped."""
    one_line = " ".join(text.splitlines())
    return re.sub(r"([\\`*_{}\[\]()#+!<>|~])", r"\\\1", one_line)


def attach_plots(name: str, storage_url: str) -> bool:
    """Prepare the storage for optuna-dashboard: our plots and a note (what the study is, how
    far its numbers can be trusted) on the study, each top trial's and confirm trial's role and
    pattern in words as its note, every trial's role as its user attr ``role`` (trials stored
    before workers wrote it), and the features study NAME.features (importances, slices and
    contours over pattern features); returns whether the features study has a feature that
    varies (importances)."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    study = load_study(name, storage_url)
    ev = study_evidence(study)
    rows = sorted(feature_rows(study), key=lambda r: -r.accuracy)
    features = features_study(study, storage_url, rows)
    save_note(features, f"## Pattern features of {name}\n\nOne trial per training run of "
                        f"study {name!r}, its features as parameters: Importance, Slice, "
                        f"Contour and Rank here read over what tells patterns apart, not the "
                        f"sampler's keys. The `trial` user attribute is the trial in {name!r}.")
    store_roles(study)
    trials = study.get_trials(deepcopy=False)
    confirms = [feature_row(t, r) for t in trials if t.state == TrialState.COMPLETE
                and (r := TrialRecord.from_trial(t)).is_confirm and r.spec and r.hash]
    for row in rows[:NOTED_TRIALS] + confirms:
        trial = trials[row.trial]
        save_note(live_trial(study, trial_id(trial)),
                  f"**{TrialRecord.from_trial(trial).role}**, accuracy {row.accuracy:.4f}. "
                  f"**Pattern** {row.hash}: {row.offsets}.\n\n"
                  + ", ".join(f"{k} {v:g}" for k, v in row.values.items()))
    config = stored_config(study)
    save_note(study, f"## Which pattern to train\n\n{plain_markdown(answer(ev).sentence)}\n\n"
                     "## How far the numbers can be trusted\n\n"
              + "".join(f"- {line}\n" for line in evidence_lines(ev))
              + (f"\n## Best pattern\n\ntrial {rows[0].trial} "
                 f"({TrialRecord.from_trial(trials[rows[0].trial]).role}): {rows[0].offsets}\n"
                 if rows else "")
              + f"\n## Pattern features\n\nStudy `{features.study_name}` holds every trained "
                f"pattern with its features as parameters: open it for importances, slices and "
                f"contours over mean distance, MBD, reads of node 0, params and FLOPs.\n"
              + (f"\n## Config\n\n{config_markdown(config)}\n" if config else ""))
    for fig in figures(study, ev, rows):
        if fig.id in ATTACHED:
            save_plotly_graph_object(study, fig.figure, graph_object_id=f"skipnas-{fig.id}")
    return bool(rows) and bool(features.best_trial.params)  # one trial read, not all
