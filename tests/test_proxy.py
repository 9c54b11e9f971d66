"""The storage proxy's access: one that other machines reach runs only with TLS and a token
every call presents; one on the loopback says that every local user can use it."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import optuna
import pytest

import nas.search.storage.proxy as proxy
from nas.errors import UserError
from nas.search._optuna.api import experimental_ok
from nas.search._optuna.grpc import grpc_client
from nas.search.storage.backends import open_storage
from nas.search.storage.proxy import CA_ENV, TOKEN_ENV, server_keys
from tests.testing import ENV, run_cli

KEYS_SCRIPT = Path(__file__).parents[1] / "deploy" / "proxy-keys.sh"
FLAGS = "--tls-cert, --tls-key and --token-file"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database(folder: Path, *names: str) -> str:
    url = f"sqlite:///{folder}/s.db"
    for name in names:
        optuna.create_study(study_name=name, storage=open_storage(url))
    return url


def _keys(folder: Path) -> Path:
    """deploy/proxy-keys.sh's certificate, key and token, in ``folder``."""
    if shutil.which("openssl") is None:
        pytest.skip("deploy/proxy-keys.sh needs the openssl command")
    made = subprocess.run(["bash", str(KEYS_SCRIPT), str(folder), "proxy.example"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return folder


@contextlib.contextmanager
def _proxy(database: str, *flags: str) -> Iterator[list[str]]:
    """`skipnas storage-proxy` running for the block; the list gets its stderr lines after."""
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "storage-proxy", "--storage",
                             database, *flags], env=ENV, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        yield lines
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        lines += err.strip().splitlines()


def test_a_proxy_other_machines_reach_refuses_to_start_without_tls_and_token(tmp_path):
    database = f"sqlite:///{tmp_path}/s.db"
    refused = run_cli("storage-proxy", "--storage", database, "--host", "0.0.0.0", "--port",
                      str(_free_port()), timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"skipnas: error: storage-proxy --host 0.0.0.0: other machines reach it, and whoever "
        f"connects could read, change and delete every study of the database; give it {FLAGS} "
        f"(README: Scaling out)"]
    assert not (tmp_path / "s.db").exists()  # refused before the database was opened
    token = tmp_path / "token"
    token.write_text("x" * 32)
    half = run_cli("storage-proxy", "--storage", database, "--host", "0.0.0.0", "--port",
                   str(_free_port()), "--token-file", str(token), timeout=60)
    assert half.returncode == 2
    assert half.stderr.strip().splitlines() == [
        f"skipnas: error: storage-proxy: give {FLAGS} together (TLS alone lets anyone in, a "
        f"token alone travels in clear)"]


def test_a_loopback_proxy_says_every_local_user_can_use_it(tmp_path):
    database = _database(tmp_path, "mine")
    port = _free_port()
    with _proxy(database, "--port", str(port)) as lines:
        storage = open_storage(f"grpc://127.0.0.1:{port}")
        assert [s.study_name for s in storage.get_all_studies()] == ["mine"]
    assert lines[:2] == [
        f"skipnas: grpc://127.0.0.1:{port} has no TLS and no token: any user of this machine "
        f"can read, change and delete every study of {database} ({FLAGS} close it)",
        f"skipnas: storage proxy for {database} at grpc://127.0.0.1:{port} (16 threads); stop "
        f"it with Ctrl-C"]


def test_a_secured_proxy_serves_only_the_clients_that_present_its_token(tmp_path, monkeypatch):
    """The proxy listens on every address, with TLS and a token: a plain client (the red team's
    repro) cannot connect, a TLS client without the token or with another is refused every
    call, a worker with both lists the studies; none is deleted. A worker that does not trust
    the proxy's certificate, or has no keys, is told so."""
    keys = _keys(tmp_path / "keys")
    database = _database(tmp_path, "first", "second")
    port = _free_port()
    url = f"grpc://127.0.0.1:{port}"
    with _proxy(database, "--host", "0.0.0.0", "--port", str(port), "--tls-cert",
                str(keys / "proxy.crt"), "--tls-key", str(keys / "proxy.key"), "--token-file",
                str(keys / "proxy.token")) as lines:
        monkeypatch.setenv(CA_ENV, str(keys / "proxy.crt"))
        monkeypatch.setenv(TOKEN_ENV, str(keys / "proxy.token"))
        worker = open_storage(url)
        assert sorted(s.study_name for s in worker.get_all_studies()) == ["first", "second"]

        with experimental_ok():
            plain = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
        with pytest.raises(ConnectionError):
            plain.wait_server_ready(timeout=2)
        with experimental_ok():
            tls_only = grpc_client("127.0.0.1", port, grpc.ssl_channel_credentials(
                (keys / "proxy.crt").read_bytes()))
        for call in (tls_only.get_all_studies, lambda: tls_only.delete_study(1)):
            with pytest.raises(grpc.RpcError) as denied:
                call()
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED

        monkeypatch.setattr(proxy, "GRPC_READY_SECONDS", 2)
        stranger = _keys(tmp_path / "stranger")  # a certificate the proxy's is not
        monkeypatch.setenv(CA_ENV, str(stranger / "proxy.crt"))
        with pytest.raises(UserError) as untrusted:
            open_storage(url)
        assert str(untrusted.value).endswith(
            f"(or the one there has no TLS, or a certificate that {CA_ENV}, "
            f"{stranger / 'proxy.crt'}, does not sign)")
        monkeypatch.delenv(CA_ENV)
        monkeypatch.delenv(TOKEN_ENV)
        with pytest.raises(UserError) as plain_worker:
            open_storage(url)
        assert str(plain_worker.value).endswith(
            f"(one with TLS answers only with {CA_ENV} and {TOKEN_ENV} set)")

        monkeypatch.setenv(CA_ENV, str(keys / "proxy.crt"))
        other = tmp_path / "other.token"
        other.write_text("0123456789abcdef0123456789abcdef")
        monkeypatch.setenv(TOKEN_ENV, str(other))
        with pytest.raises(UserError) as refused:
            open_storage(url)
        assert str(refused.value) == (
            f"the storage proxy at 127.0.0.1:{port} refused the token in {other}: give its "
            f"certificate and token file in {CA_ENV} and {TOKEN_ENV}")
    token = (keys / "proxy.token").read_text().strip()
    assert not any(token in line for line in lines), lines
    # (gRPC's own log adds a line for the plain client's failed handshake)
    assert f"skipnas: storage proxy for {database} at grpc://0.0.0.0:{port} (16 threads, TLS " \
           f"and token); stop it with Ctrl-C" in lines and lines[-1] == "skipnas: terminated"
    assert sorted(s.study_name for s in open_storage(database).get_all_studies()) == [
        "first", "second"]


def test_a_client_sends_nothing_in_clear_to_another_machine(monkeypatch):
    """The refusal comes before any channel is made: the test never reaches out (a host name
    under the reserved .example domain, and no client to connect with)."""
    def connect(*args):
        raise AssertionError("a channel to another machine was opened")

    monkeypatch.setattr(proxy, "grpc_client", connect)
    monkeypatch.delenv(CA_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(UserError, match=f"grpc://db.example:13000: a storage proxy on another "
                                        f"machine is reached over TLS with its token: set "
                                        f"{CA_ENV} to its certificate and {TOKEN_ENV} to the "
                                        f"file holding its token"):
        open_storage("grpc://db.example:13000")
    monkeypatch.setenv(CA_ENV, "/nowhere.crt")
    with pytest.raises(UserError, match=f"set both {CA_ENV} .* and {TOKEN_ENV} .*, or neither"):
        open_storage("grpc://db.example:13000")


def test_bad_keys_are_one_line(tmp_path):
    keys = _keys(tmp_path)
    cert, key, token = (str(keys / f) for f in ("proxy.crt", "proxy.key", "proxy.token"))
    short = tmp_path / "short"
    short.write_text("secret\n")
    with pytest.raises(UserError, match=f"--token-file {short}: the token must be at least 16 "
                                        f"printable ASCII characters"):
        server_keys(cert, key, str(short))
    with pytest.raises(UserError, match=f"--tls-cert {key}: not a PEM certificate"):
        server_keys(key, key, token)
    with pytest.raises(UserError, match=f"--tls-key {cert}: not a PEM private key"):
        server_keys(cert, cert, token)
    with pytest.raises(UserError, match="--tls-key /nowhere: No such file or directory"):
        server_keys(cert, "/nowhere", token)
    assert server_keys(cert, key, token).token == (keys / "proxy.token").read_text().strip()
