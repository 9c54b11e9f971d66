"""The dashboard's middlewares around optuna-dashboard's app: the Best Trial card with each
pattern in words (search trials only), Slice, Contour, Rank and the trials table over pattern
features, the importance card over pattern features, and requests served to this loopback
address only."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ...search import trial_id
from ...search.experiment.study import best_of
from ...search.record import TrialRecord
from ..feature_study import FeatureRow, feature_row
from .notes import ATTACHED

_log = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def card_params(row: FeatureRow) -> list[dict[str, Any]]:
    """A pattern as optuna-dashboard's Best Trial card lists params: its offsets in words,
    then its features."""
    shown = [("pattern", f"{row.offsets} ({row.hash})")]
    shown += [(k, f"{v:g}") for k, v in row.values.items()]
    return [{"name": k, "param_internal_value": 0, "param_external_value": v,
             "param_external_pytyp": "<class 'str'>",
             "distribution": {"type": "CategoricalDistribution",
                              "choices": [{"pytype": "<class 'str'>", "value": v}]}}
            for k, v in shown]


def with_features(detail: dict[str, Any], rows: dict[int, FeatureRow], every: bool) -> None:
    """Add to optuna-dashboard's study answer ``detail`` each search trial's pattern features
    (``rows``: trial number -> row, of the completed ones) as params beside its keys, first in
    the search space: the page's Slice, Contour, Rank and parallel coordinates, which read
    the answer's params in the browser, and the trials table then lead with what tells
    patterns apart (a trial without a feature, params of a reused result, goes without it).
    Features with one value throughout are left out; ``every``: whether every completed trial
    has a row (then the features they all have are in the intersection search space too)."""
    from optuna_dashboard._serializer import serialize_distribution  # the tested version's

    values: dict[str, list[float]] = {}
    for features in rows.values():
        for k, v in features.values.items():
            values.setdefault(k, []).append(v)
    space = {k: serialize_distribution(FloatDistribution(min(v), max(v)))
             for k, v in values.items() if max(v) > min(v)}
    for trial in detail["trials"]:
        if (row := rows.get(trial["number"])) is not None:
            trial["params"] = [{"name": k, "param_internal_value": row.values[k],
                                "param_external_value": str(row.values[k]),
                                "param_external_pytyp": "<class 'float'>", "distribution": d}
                               for k, d in space.items() if k in row.values] + trial["params"]
    detail["union_search_space"] = [{"name": k, "distribution": d} for k, d in space.items()] \
        + detail["union_search_space"]
    if every:   # the features every search trial has
        detail["intersection_search_space"] = [
            {"name": k, "distribution": d} for k, d in space.items()
            if len(values[k]) == len(rows)] + detail["intersection_search_space"]


def best_trials_in_words(app: WSGIApp, storage: BaseStorage, study: int) -> WSGIApp:
    """optuna-dashboard's Best Trial card lists the best trial's params, which here are the
    sampler's keys: serve study ``study``'s best trials with their pattern in words and its
    features instead, give the search trials their features as params beside their keys
    (:func:`with_features`), and leave out plots an older skipnas attached that are no longer
    among ours (the storage cannot drop them)."""
    path, rows = f"/api/studies/{study}", {}

    def row(frozen: FrozenTrial) -> FeatureRow | None:
        """A completed trial's features; None for one without a pattern, or apart from the
        search (confirm and fidelity runs train at another fidelity)."""
        if (key := trial_id(frozen)) not in rows:   # completed trials do not change
            try:
                record = TrialRecord.from_trial(frozen)
                rows[key] = None if record.spec is None or record.hash is None \
                    or record.is_apart else feature_row(frozen, record)
            except Exception as e:  # a record this version cannot read: the trial keeps keys
                _log.warning("dashboard: trial id %s shown with its keys (%s: %s)", key,
                             type(e).__name__, e)
                rows[key] = None
        return rows[key]

    def search_best(detail: dict[str, Any], completed: list[FrozenTrial]
                    ) -> list[dict[str, Any]]:
        """The search's best trials: Optuna's best (or Pareto front) may hold confirm runs,
        which train at another fidelity."""
        if len(detail["directions"]) > 1:
            return [t for t in detail["best_trials"]
                    if not TrialRecord.from_trial(storage.get_trial(t["trial_id"])).is_apart]
        from optuna_dashboard._serializer import serialize_frozen_trial  # the tested version's

        best = best_of(completed)
        return [] if best is None else [
            serialize_frozen_trial(study, best, storage.get_study_system_attrs(study))]

    def described(environ: dict[str, Any], start_response: Callable[..., Any]
                  ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)
        answer: list[Any] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer[:] = [status, headers]   # sent below, once the body is rewritten

        chunks = app(environ, keep)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = answer
        if status.startswith("200"):
            detail = json.loads(body)
            completed = storage.get_all_trials(study, deepcopy=False,
                                               states=(TrialState.COMPLETE,))
            features = {t.number: r for t in completed if (r := row(t)) is not None}
            detail["best_trials"] = search_best(detail, completed)
            for trial in detail["best_trials"]:
                if (best := features.get(trial["number"])) is not None:
                    trial["params"] = card_params(best)
            with_features(detail, features, every=len(features) == len(completed))
            detail["plotly_graph_objects"] = [
                g for g in detail["plotly_graph_objects"]
                if not g["id"].startswith("skipnas-") or g["id"][8:] in ATTACHED]
            body = json.dumps(detail).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    return described


def importances_over_features(app: WSGIApp, storage: BaseStorage, study: int,
                              features: str) -> WSGIApp:
    """optuna-dashboard's Hyperparameter Importance card ranks the sampler's keys, which tell
    patterns apart only together (each gets the same share): answer study ``study``'s
    importances with those of the features study named ``features`` (mean distance, MBD,
    params..., as stored when the dashboard started, like our plots), while it exists."""
    path = f"/api/studies/{study}/param_importances"

    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == path:
            try:  # by name: another dashboard on the storage may have stored it again
                other = storage.get_study_id_from_name(features)
            except KeyError:
                other = study   # deleted meanwhile: Optuna's card, over the keys
            environ = {**environ, "PATH_INFO": f"/api/studies/{other}/param_importances"}
        return app(environ, start_response)

    return routed


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def loopback_only(app: WSGIApp, port: int) -> WSGIApp:
    """Refuse (403) requests whose Host header is not this loopback server (a page on another
    site reaching it through DNS rebinding) and writes whose Origin is another site."""
    allowed = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        foreign_write = environ.get("REQUEST_METHOD", "GET") not in SAFE_METHODS and \
            origin is not None and origin.partition("://")[2] not in allowed
        if environ.get("HTTP_HOST") not in allowed or foreign_write:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"skipnas dashboard: only requests to this loopback address are served\n"]
        return app(environ, start_response)

    return guarded


