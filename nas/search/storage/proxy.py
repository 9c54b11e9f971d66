"""The storage proxy's clients (``grpc://HOST:PORT`` storages) and the keys of both ends (the
proxy itself: :mod:`.server`).

A proxy serves every study of its database to whoever reaches its port, so one that other
machines reach runs only with TLS and a token that every call presents (gRPC's
``authorization: Bearer`` metadata). One on the loopback may run without them: every user of
the machine can then use it, and it says so. Clients find the proxy's certificate and token
through the environment (:data:`CA_ENV`, :data:`TOKEN_ENV`), never in the storage URL, which is
written to configs and logs.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import optuna

from ...errors import UserError
from .._optuna.api import experimental_ok
from .._optuna.grpc import grpc_client

GRPC_READY_SECONDS = 30    # a worker's wait for its storage proxy to answer
MIN_TOKEN_CHARS = 16       # a shorter token could be guessed
CA_ENV = "SKIPNAS_PROXY_CA"            # a client's: the proxy's certificate (PEM file)
TOKEN_ENV = "SKIPNAS_PROXY_TOKEN_FILE"  # a client's: the file holding the proxy's token
SECURE_FLAGS = "--tls-cert, --tls-key and --token-file"


@dataclass(frozen=True)
class ServerKeys:
    """What a proxy needs to serve TLS and check tokens."""
    cert: bytes  # PEM certificate chain
    key: bytes   # PEM private key
    token: str


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to reach a secured proxy."""
    ca: bytes    # PEM certificate the proxy's must chain to (its own, when self-signed)
    token: str


def is_loopback(host: str) -> bool:
    """Whether only this machine reaches ``host`` (a name other than localhost may resolve to
    anything, so it counts as another machine's)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_keys(cert: str | None, key: str | None, token_file: str | None) -> ServerKeys | None:
    """A proxy's keys from its flags; None when none is given."""
    given = [x for x in (cert, key, token_file) if x is not None]
    if not given:
        return None
    if cert is None or key is None or token_file is None:
        raise UserError(f"storage-proxy: give {SECURE_FLAGS} together (TLS alone lets "
                        f"anyone in, a token alone travels in clear)")
    return ServerKeys(_pem(cert, "CERTIFICATE", "--tls-cert"),
                      _pem(key, "PRIVATE KEY", "--tls-key"), _token(token_file, "--token-file"))


def client_keys() -> ClientKeys | None:
    """A client's keys from the environment; None when neither variable is set."""
    ca, token_file = os.environ.get(CA_ENV), os.environ.get(TOKEN_ENV)
    if ca is None and token_file is None:
        return None
    if ca is None or token_file is None:
        raise UserError(f"set both {CA_ENV} (the storage proxy's certificate) and {TOKEN_ENV} "
                        f"(the file holding its token), or neither")
    return ClientKeys(_pem(ca, "CERTIFICATE", CA_ENV), _token(token_file, TOKEN_ENV))


def _read(path: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{where} {path}: {e.strerror or e}") from None


def _pem(path: str, kind: str, where: str) -> bytes:
    data = _read(path, where)
    if f"-----BEGIN {kind}".encode() not in data and not (
            kind == "PRIVATE KEY" and b"PRIVATE KEY-----" in data):
        raise UserError(f"{where} {path}: not a PEM {kind.lower()}")
    return data


def _token(path: str, where: str) -> str:
    """The token in the file at ``path`` (surrounding whitespace dropped); never shown."""
    text = _read(path, where).decode("ascii", errors="replace").strip()
    if len(text) < MIN_TOKEN_CHARS or not text.isascii() or not text.isprintable():
        raise UserError(f"{where} {path}: the token must be at least {MIN_TOKEN_CHARS} printable "
                        f"ASCII characters (`openssl rand -hex 32` makes one)")
    return text


def address(url: str) -> tuple[str, int]:
    """HOST and PORT of ``grpc://HOST:PORT``."""
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not url.startswith("grpc://") or not host or not port.isdigit():
        raise UserError(f"bad storage URL {url!r}: use grpc://HOST:PORT (a `skipnas "
                        f"storage-proxy`)")
    return host, int(port)


def check_grpc() -> None:
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise UserError("grpc:// storages and `skipnas storage-proxy` need grpcio: "
                        "pip install 'skipnas[grpc]'") from None


def open_proxy(url: str) -> optuna.storages.BaseStorage:
    """The storage a proxy serves at ``url``, over TLS with the token when the environment
    names them (required for another machine's proxy), once the proxy has accepted a call."""
    host, port = address(url)
    check_grpc()
    import grpc

    keys = client_keys()
    if keys is None and not is_loopback(host):
        raise UserError(f"{url}: a storage proxy on another machine is reached over TLS with "
                        f"its token: set {CA_ENV} to its certificate and {TOKEN_ENV} to the "
                        f"file holding its token")
    credentials = None if keys is None else grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=keys.ca),
        grpc.access_token_call_credentials(keys.token))
    with experimental_ok():
        storage = grpc_client(host, port, credentials)
    try:
        storage.wait_server_ready(timeout=GRPC_READY_SECONDS)
    except ConnectionError:
        why = (f" (one with TLS answers only with {CA_ENV} and {TOKEN_ENV} set)"
               if keys is None else f" (or the one there has no TLS, or a certificate that "
                                    f"{CA_ENV}, {os.environ[CA_ENV]}, does not sign)")
        raise UserError(f"no storage proxy answers at {host}:{port} within "
                        f"{GRPC_READY_SECONDS} s; start one with `skipnas storage-proxy "
                        f"--storage URL --port {port}`{why}") from None
    try:  # any call shows whether the proxy takes this client; a study of no name is cheap
        storage.get_study_id_from_name("")
    except KeyError:
        pass
    except grpc.RpcError as e:
        if e.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise
        have = "no token" if keys is None else f"the token in {os.environ[TOKEN_ENV]}"
        raise UserError(f"the storage proxy at {host}:{port} refused {have}: give its "
                        f"certificate and token file in {CA_ENV} and {TOKEN_ENV}") from None
    return storage


