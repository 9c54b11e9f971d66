"""Live dashboard: optuna-dashboard on the study storage, with skipnas' principle plots."""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import UserError
from ..search.storage import load_study, open_storage
from ..search.study import study_evidence
from .analysis import evidence_lines
from .report import figures

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Our plots shown in optuna-dashboard's study page, by figure id (attached under
# "skipnas-<id>", so restarting the dashboard overwrites them rather than adding copies).
ATTACHED = ("accuracy-vs-mbd", "accuracy-vs-mean-distance", "accuracy-vs-params", "confirmed")


def attach_plots(name: str, storage_url: str) -> list[str]:
    """Save our plots, and the study's noise and confirmed winner as its note, into the study
    for optuna-dashboard; returns the plots' ids."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    study = load_study(name, storage_url)
    ev = study_evidence(study)
    save_note(study, "## How far the numbers can be trusted\n\n"
              + "".join(f"- {line}\n" for line in evidence_lines(ev)))
    ids = []
    for fig in figures(study, ev):
        if fig.id in ATTACHED:
            ids.append(save_plotly_graph_object(study, fig.figure,
                                                graph_object_id=f"skipnas-{fig.id}"))
    return ids


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

    if host not in LOOPBACK:
        raise UserError(f"dashboard host {host!r}: only loopback is served; use an SSH tunnel")

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (wsgiref's name)
            pass

    try:
        server = make_server(host, port, loopback_only(wsgi(open_storage(storage_url)), port),
                             server_class=Server, handler_class=QuietHandler)
    except OSError as e:
        raise UserError(f"dashboard port {port} on {host}: {e.strerror} (choose another with "
                        f"--port)") from None
    attach_plots(name, storage_url)
    print(f"optuna-dashboard for {name!r} on http://{host}:{port}/dashboard/ (Ctrl-C stops)",
          flush=True)
    with server:
        server.serve_forever()
