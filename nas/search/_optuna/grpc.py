"""Optuna's gRPC storage proxy, server and client, as skipnas needs them: a server that takes
interceptors (the proxy's token check) and stops gracefully, a client over TLS."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage

if TYPE_CHECKING:
    import grpc


def grpc_server(storage: BaseStorage, threads: int,
                interceptors: Sequence[Any]) -> grpc.Server:
    """A gRPC server of Optuna's storage proxy service for ``storage``, with no port yet and
    not started (Optuna's `make_server` opens a plain port and takes no interceptors; its
    `run_grpc_proxy_server` blocks and gives no handle to stop it gracefully)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import (
        add_StorageServiceServicer_to_server,
    )
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    server = grpc.server(ThreadPoolExecutor(max_workers=threads), interceptors=interceptors)
    add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    return server


def grpc_client(host: str, port: int,
                credentials: grpc.ChannelCredentials | None) -> optuna.storages.GrpcStorageProxy:
    """Optuna's storage proxy client for HOST:PORT over a channel with ``credentials`` (None:
    a plain one), not yet connected."""
    if credentials is None:
        return optuna.storages.GrpcStorageProxy(host=host, port=port)
    return _SecureGrpcStorageProxy(host=host, port=port, credentials=credentials)


class _SecureGrpcStorageProxy(optuna.storages.GrpcStorageProxy):
    """Optuna's client over a channel with credentials (Optuna's opens only plain channels):
    Optuna 5.0's `_setup` and `wait_server_ready` with the channel replaced. Not picklable."""

    def __init__(self, *, host: str, port: int, credentials: grpc.ChannelCredentials) -> None:
        self._credentials = credentials
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        import grpc
        from optuna.storages._grpc.auto_generated.api_pb2_grpc import StorageServiceStub
        from optuna.storages._grpc.client import GrpcClientCache

        self._channel = grpc.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                            options=[("grpc.max_receive_message_length", -1)])
        self._stub = StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)

    def wait_server_ready(self, timeout: float | None = None) -> None:
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as e:
            raise ConnectionError("GRPC connection timeout") from e
