"""Live dashboard: optuna-dashboard on the study storage, with skipnas' principle plots."""
from __future__ import annotations

import socket

from ..errors import UserError
from ..search.storage import load_study, open_storage
from .report import figures

# Our plots shown in optuna-dashboard's study page, by figure id (attached under
# "skipnas-<id>", so restarting the dashboard overwrites them rather than adding copies).
ATTACHED = ("accuracy-vs-mbd", "accuracy-vs-mean-distance", "accuracy-vs-params", "confirmed")


def attach_plots(name: str, storage_url: str) -> list[str]:
    """Save our plots into the study for optuna-dashboard; returns their ids."""
    from optuna_dashboard import save_plotly_graph_object

    study = load_study(name, storage_url)
    ids = []
    for fig in figures(study):
        if fig.id in ATTACHED:
            ids.append(save_plotly_graph_object(study, fig.figure,
                                                graph_object_id=f"skipnas-{fig.id}"))
    return ids


def serve(name: str, storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard for the storage (blocks until interrupted)."""
    from optuna_dashboard import run_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"dashboard host {host!r}: only loopback is served; use an SSH tunnel")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"dashboard port {port} on {host}: {e.strerror}") from None
    attach_plots(name, storage_url)
    print(f"optuna-dashboard for {name!r} on http://{host}:{port}/dashboard/ (Ctrl-C stops)")
    run_server(open_storage(storage_url), host=host, port=port)
