"""Pattern features as a study Optuna can read: importances, slices and contours over what
tells patterns apart (backprop distances, reads of the block input, params, FLOPs) instead of
the sampler's keys."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import optuna
import plotly.graph_objects as go
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState, create_trial

from search_spaces import offsets_in_words, pattern_features

from ..engine.spec import PatternSpec
from ..errors import UserError
from ..search import experimental_ok
from ..search.config import VAL_ACCURACY
from ..search.record import TrialRecord
from ..search.storage.backends import open_storage
from ..stats import thin

FEATURES_SUFFIX = ".features"  # the dashboard's features study: NAME.features, same storage
# Features' user-attr keys on the features study's trials, and the study's own.
TRIAL_ATTR, PATTERN_ATTR, HASH_ATTR = "trial", "pattern", "hash"
FEATURES_OF = "features_of"  # the study whose features it holds: only that one is replaced


@dataclass(frozen=True)
class FeatureRow:
    """A trained pattern's accuracy and features (``values``: name -> value)."""
    trial: int
    accuracy: float
    hash: str
    offsets: str                 # the pattern in words (:func:`offsets_in_words`)
    values: dict[str, float]
    started: datetime | None = None     # the trial's own start and completion
    completed: datetime | None = None


def trained_trials(study: optuna.Study) -> list[tuple[FrozenTrial, TrialRecord]]:
    """The trained, completed trials of the search and its baselines with their records
    (confirm and fidelity runs, and reused results, left out)."""
    return [(t, r) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not ((r := TrialRecord.from_trial(t)).spec is None or r.hash is None
                    or r.is_reused or r.is_apart)]


def feature_rows(study: optuna.Study, limit: int | None = None,
                 trained: list[tuple[FrozenTrial, TrialRecord]] | None = None
                 ) -> list[FeatureRow]:
    """One row per trained trial (:func:`trained_trials`, if not given); with ``limit``, of
    at most about that many of them, evenly spaced by trial number (:func:`nas.stats.thin`)."""
    trained = trained_trials(study) if trained is None else trained
    if limit is not None:
        trained = [trained[i] for i in thin(len(trained), limit)]
    return [feature_row(t, r) for t, r in trained]


def feature_row(trial: FrozenTrial, record: TrialRecord) -> FeatureRow:
    """A completed trial's pattern features (its record must hold a spec and a hash)."""
    assert record.spec is not None and record.hash is not None
    pattern = PatternSpec.from_dict(record.spec).pattern
    values = pattern_features(pattern).to_dict()
    values.update({k: float(v) for k, v in (("params", record.params), ("flops", record.flops))
                   if v is not None})
    return FeatureRow(trial.number, trial.values[0], record.hash, offsets_in_words(pattern),
                      values, trial.datetime_start, trial.datetime_complete)


def features_study(study: optuna.Study, storage_url: str | None = None,
                   rows: list[FeatureRow] | None = None) -> optuna.Study:
    """A study whose trials are ``study``'s trained patterns with their features as params
    (features with one value throughout left out). In memory; with ``storage_url``, stored
    there as NAME.features for optuna-dashboard, replacing an older one (and refusing to
    replace a study of that name that is not one). ``rows``: :func:`feature_rows`, if known.
    Its trials come in ``study``'s trial order with their trials' own times, so its history
    and timeline read as the search went."""
    rows = sorted(feature_rows(study) if rows is None else rows, key=lambda r: r.trial)
    names = sorted({k for row in rows for k in row.values})
    ranges = {k: (min(v), max(v)) for k in names
              if len(v := [row.values[k] for row in rows if k in row.values]) == len(rows)}
    distributions: dict[str, BaseDistribution] = {
        k: FloatDistribution(lo, hi) for k, (lo, hi) in ranges.items() if hi > lo}
    name = study.study_name + FEATURES_SUFFIX
    storage = None
    if storage_url is not None:
        storage = open_storage(storage_url)
        if name in optuna.get_all_study_names(storage):
            old = optuna.load_study(study_name=name, storage=storage)
            if old.user_attrs.get(FEATURES_OF) != study.study_name:  # a user's own study
                raise UserError(f"study {name!r} in this storage is not the features study of "
                                f"{study.study_name!r}; it is left as it is (rename it to let "
                                f"the dashboard store the features there)")
            optuna.delete_study(study_name=name, storage=storage)
    view = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    with experimental_ok():
        view.set_metric_names([VAL_ACCURACY])
    view.set_user_attr(FEATURES_OF, study.study_name)
    view.add_trials([feature_trial(row, distributions) for row in rows])
    return view


def feature_trial(row: FeatureRow, distributions: dict[str, BaseDistribution]) -> FrozenTrial:
    """The features study's trial for ``row``: its features in ``distributions`` as params,
    started and completed when its trial was."""
    trial = create_trial(
        params={k: row.values[k] for k in distributions}, distributions=distributions,
        value=row.accuracy,
        user_attrs={TRIAL_ATTR: row.trial, PATTERN_ATTR: row.offsets, HASH_ATTR: row.hash})
    if row.started is not None and row.completed is not None:
        trial.datetime_start, trial.datetime_complete = row.started, row.completed
    return trial


def importance_figure(study: optuna.Study, limit: int | None = None,
                      rows: list[FeatureRow] | None = None) -> go.Figure:
    """PED-ANOVA importances (Optuna's default, deterministic) of the pattern features for the
    accuracy, over at most about ``limit`` trained patterns (evenly spaced; None: all).
    ``rows``: every trained trial's :func:`feature_rows`, when already computed."""
    if rows is None:
        trained = trained_trials(study)
        total, rows = len(trained), feature_rows(study, limit, trained)
    else:
        total, rows = len(rows), sorted(rows, key=lambda r: r.trial)
        rows = [rows[i] for i in thin(len(rows), limit)] if limit is not None else rows
    view = features_study(study, rows=rows)
    fig = optuna.visualization.plot_param_importances(
        view, evaluator=PedAnovaImportanceEvaluator(), target_name=VAL_ACCURACY)
    of = "" if len(rows) == total else f" of {total}, evenly spaced by trial number"
    fig.update_layout(title=f"Which pattern features matter for {VAL_ACCURACY}<br>(PED-ANOVA "
                            f"over {len(rows)} trained patterns{of})",
                      xaxis_title="importance", yaxis_title="pattern feature")
    return fig
