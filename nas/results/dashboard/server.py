"""The dashboard's server: optuna-dashboard on the study's storage, on loopback only, with our
notes and plots attached and its answers rewritten by the middlewares."""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import UserError
from ...search import study_id
from ...search.storage.backends import load_study, open_storage
from ..feature_study import FEATURES_SUFFIX
from .middleware import best_trials_in_words, importances_over_features, loopback_only
from .notes import attach_plots

LOOPBACK = ("127.0.0.1", "localhost", "::1")
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
