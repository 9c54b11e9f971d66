"""The storage proxy (`skipnas storage-proxy`): serves the studies of a database to workers at
grpc://HOST:PORT, over TLS with a token unless only this machine reaches it."""
from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import optuna

from ...errors import UserError
from .._optuna.grpc import grpc_server
from .backends import open_storage
from .proxy import SECURE_FLAGS, ServerKeys, check_grpc, is_loopback
from .urls import mask_url

if TYPE_CHECKING:
    import grpc

_log = logging.getLogger(__name__)
PROXY_THREADS = 16         # calls a storage proxy serves at once, over one connection pool
PROXY_GRACE_SECONDS = 5.0  # a stopped proxy finishes the calls in flight this long


class _TokenCheck:
    """A server interceptor that lets through only the calls presenting the token (gRPC
    calls `intercept_service`; not a grpc.ServerInterceptor subclass, as grpc is optional)."""

    def __init__(self, token: str) -> None:
        import grpc

        self._expected = f"Bearer {token}".encode()
        self._refuse = grpc.unary_unary_rpc_method_handler(_refuse)

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        presented = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(presented).encode(), self._expected):
            return continuation(details)
        return self._refuse


def _refuse(_request: Any, context: grpc.ServicerContext) -> None:
    import grpc

    context.abort(grpc.StatusCode.UNAUTHENTICATED, "this storage proxy needs its token")


def serve_proxy(storage_url: str, host: str, port: int, threads: int = PROXY_THREADS,
                keys: ServerKeys | None = None) -> None:
    """Serve the storage at ``storage_url`` to workers at grpc://HOST:PORT until stopped
    (Optuna's gRPC storage proxy: every worker's calls go through this one process, so a
    fleet needs the proxy's pool of database connections, not one per worker). Without
    ``keys`` only on the loopback."""
    if storage_url.split(":", 1)[0] in ("grpc", "journal"):
        raise UserError(f"the proxy serves a database (sqlite:///... or postgresql+psycopg://"
                        f"...), not {mask_url(storage_url)!r}")
    if keys is None and not is_loopback(host):
        raise UserError(f"storage-proxy --host {host}: other machines reach it, and whoever "
                        f"connects could read, change and delete every study of the database; "
                        f"give it {SECURE_FLAGS} (README: Scaling out)")
    check_grpc()
    import grpc

    # Optuna's cache in front of the database, as its proxy documentation asks.
    storage = optuna.storages.get_storage(open_storage(storage_url))
    server = grpc_server(storage, threads, [] if keys is None else [_TokenCheck(keys.token)])
    if keys is None:
        server.add_insecure_port(f"{host}:{port}")
        _log.warning("grpc://%s:%d has no TLS and no token: any user of this machine can read, "
                     "change and delete every study of %s (%s close it)", host, port,
                     mask_url(storage_url), SECURE_FLAGS)
    else:
        server.add_secure_port(f"{host}:{port}",
                               grpc.ssl_server_credentials([(keys.key, keys.cert)]))
    server.start()
    _log.warning("storage proxy for %s at grpc://%s:%d (%d threads%s); stop it with Ctrl-C",
                 mask_url(storage_url), host, port, threads,
                 "" if keys is None else ", TLS and token")
    try:
        server.wait_for_termination()
    finally:  # Ctrl-C or SIGTERM: the calls in flight finish, none is cut mid-transaction
        server.stop(grace=PROXY_GRACE_SECONDS).wait()
