"""Live dashboard: optuna-dashboard on the study storage, with skipnas' principle plots."""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from ..errors import UserError
from ..search.evidence import answer
from ..search.optuna_api import live_trial, study_id, trial_id
from ..search.record import TrialRecord
from ..search.storage import load_study, open_storage
from ..search.study import best_of, stored_config, study_evidence
from .analysis import evidence_lines
from .features import FEATURES_SUFFIX, FeatureRow, feature_row, feature_rows, features_study
from .report import figures

_log = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Our plots shown in optuna-dashboard's study page, by figure id (attached under
# "skipnas-<id>", so restarting the dashboard overwrites them rather than adding copies).
# The features' importances are not among them: the page's own Hyperparameter Importance card
# shows them (importances_over_features).
ATTACHED = ("top-1-pattern", "accuracy-vs-mean-distance", "accuracy-vs-mbd",
            "accuracy-vs-params", "confirmed")
NOTED_TRIALS = 5  # the best trials that get a note with their pattern in words
# best_trials_in_words rewrites optuna-dashboard's internal /api/studies/{id} answer: the minor
# version whose answer it was checked against (pyproject pins it; tests/test_report.py checks
# the shape). Another version may answer otherwise, so the dashboard refuses to start on it.
TESTED_DASHBOARD = (0, 21)


def check_dashboard_version(installed: str | None = None) -> None:
    """Refuse, in one line, an optuna-dashboard whose minor version is not the tested one."""
    if installed is None:
        from importlib.metadata import version
        installed = version("optuna-dashboard")
    major, minor = TESTED_DASHBOARD
    try:
        ok = tuple(int(part) for part in installed.split(".")[:2]) == TESTED_DASHBOARD
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"optuna-dashboard {installed} is installed, but skipnas' dashboard "
                        f"was tested with {major}.{minor}.x (it rewrites that version's API "
                        f"answers): pip install 'optuna-dashboard>={major}.{minor},"
                        f"<{major}.{minor + 1}'")


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
    far its numbers can be trusted) on the study, each top trial's pattern in words as its
    note, and the features study NAME.features (importances, slices and contours over pattern
    features); returns whether the features study has a feature that varies (importances)."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    study = load_study(name, storage_url)
    ev = study_evidence(study)
    rows = sorted(feature_rows(study), key=lambda r: -r.accuracy)
    features = features_study(study, storage_url, rows)
    save_note(features, f"## Pattern features of {name}\n\nOne trial per training run of "
                        f"study {name!r}, its features as parameters: Importance, Slice, "
                        f"Contour and Rank here read over what tells patterns apart, not the "
                        f"sampler's keys. The `trial` user attribute is the trial in {name!r}.")
    trials = study.get_trials(deepcopy=False)
    for row in rows[:NOTED_TRIALS]:
        save_note(live_trial(study, trial_id(trials[row.trial])),
                  f"**Pattern** {row.hash}: {row.offsets}.\n\n"
                  + ", ".join(f"{k} {v:g}" for k, v in row.values.items()))
    config = stored_config(study)
    save_note(study, f"## Which pattern to train\n\n{plain_markdown(answer(ev).sentence)}\n\n"
                     "## How far the numbers can be trusted\n\n"
              + "".join(f"- {line}\n" for line in evidence_lines(ev))
              + (f"\n## Best pattern\n\ntrial {rows[0].trial}: {rows[0].offsets}\n"
                 if rows else "")
              + f"\n## Pattern features\n\nStudy `{features.study_name}` holds every trained "
                f"pattern with its features as parameters: open it for importances, slices and "
                f"contours over mean distance, MBD, reads of node 0, params and FLOPs.\n"
              + (f"\n## Config\n\n{config_markdown(config)}\n" if config else ""))
    for fig in figures(study, ev, rows):
        if fig.id in ATTACHED:
            save_plotly_graph_object(study, fig.figure, graph_object_id=f"skipnas-{fig.id}")
    return bool(rows) and bool(features.best_trial.params)  # one trial read, not all


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


def best_trials_in_words(app: WSGIApp, storage: BaseStorage, study: int) -> WSGIApp:
    """optuna-dashboard's Best Trial card lists the best trial's params, which here are the
    sampler's keys: serve study ``study``'s best trials with their pattern in words and its
    features instead (the trials' own rows and pages keep their params), and leave out plots
    an older skipnas attached that are no longer among ours (the storage cannot drop them)."""
    path, rows = f"/api/studies/{study}", {}

    def row(trial: int) -> FeatureRow | None:
        if trial not in rows:   # completed trials do not change: each is read once
            try:
                frozen = storage.get_trial(trial)
                record = TrialRecord.from_trial(frozen)
                rows[trial] = None if record.spec is None or record.hash is None \
                    else feature_row(frozen, record)
            except Exception as e:  # a record this version cannot read: the card keeps keys
                _log.warning("dashboard: trial id %s shown with its keys (%s: %s)", trial,
                             type(e).__name__, e)
                rows[trial] = None
        return rows[trial]

    def search_best(detail: dict[str, Any]) -> list[dict[str, Any]]:
        """The search's best trials: Optuna's best (or Pareto front) may hold confirm runs,
        which train at another fidelity."""
        if len(detail["directions"]) > 1:
            return [t for t in detail["best_trials"]
                    if not TrialRecord.from_trial(storage.get_trial(t["trial_id"])).is_apart]
        from optuna_dashboard._serializer import serialize_frozen_trial  # the tested version's

        best = best_of(storage.get_all_trials(study, deepcopy=False,
                                              states=(TrialState.COMPLETE,)))
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
            detail["best_trials"] = search_best(detail)
            for trial in detail["best_trials"]:
                if (described_row := row(trial["trial_id"])) is not None:
                    trial["params"] = card_params(described_row)
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


LOOPBACK = ("127.0.0.1", "localhost", "::1")
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


def serve(name: str, storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard for the storage on loopback (blocks until interrupted)."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    check_dashboard_version()
    if host not in LOOPBACK:
        raise UserError(f"dashboard host {host!r}: only loopback is served; use an SSH tunnel")

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (wsgiref's name)
            pass

    def nothing_yet(environ: dict[str, Any], start_response: Callable[..., Any]
                    ) -> Iterable[bytes]:
        raise RuntimeError("the dashboard served a request before its app was set")

    storage = open_storage(storage_url)
    live = load_study(name, storage_url)
    try:  # the port before the plots: a busy one fails before the storage is written
        server = make_server(host, port, nothing_yet, server_class=Server,
                             handler_class=QuietHandler)
    except OSError as e:
        raise UserError(f"dashboard port {port} on {host}: {e.strerror} (choose another with "
                        f"--port)") from None
    app = best_trials_in_words(wsgi(storage), storage, study_id(live))
    # One objective: the features study has only the first (nsga2's second would vanish).
    if attach_plots(name, storage_url) and len(live.directions) == 1:
        app = importances_over_features(app, storage, study_id(live), name + FEATURES_SUFFIX)
    server.set_app(loopback_only(app, port))
    print(f"optuna-dashboard for {name!r} on http://{host}:{port}/dashboard/ (Ctrl-C stops)",
          flush=True)
    with server:
        # Requests are served on a thread of their own, so Ctrl-C and SIGTERM land on this one:
        # raised inside a request, wsgiref's handler would catch them and serve on.
        serving = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
        serving.start()
        try:
            while serving.is_alive():
                serving.join(0.5)
        finally:
            server.shutdown()
