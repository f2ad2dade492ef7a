"""Self-test of the redis-server peer (tests/peers/redis_server.py) used by the Redis session tests."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).parent.parent / "peers"))

from redis_server import REDIS_SERVER, RedisServer  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(),
    reason=f"needs {REDIS_SERVER}: run scripts/install-test-peers.sh as root",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis"), tls_ca=trustme.CA()) as peer:
        yield peer


def no_retry() -> Retry:
    """redis-py 8 retries ConnectionError (AuthenticationError is one) 3 times with backoff: ~4 s per failure."""
    return Retry(NoBackoff(), 0)


def raw_reply(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {reply!r}"
            reply += chunk
    return reply


def by_name(server: RedisServer, name: str) -> list[dict]:
    return [entry for entry in server.client_list() if entry.get("name") == name]


def test_settings(server: RedisServer) -> None:
    assert server.host == "127.0.0.1"
    assert 20000 <= server.port <= 32767 and server.tls_port is not None and 20000 <= server.tls_port <= 32767
    assert server.port != server.tls_port
    assert len(server.password) >= 16 and len(server.acl_password) >= 16 and server.password != server.acl_password
    assert server.ca_path is not None and server.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "Ready to accept connections" in server.log_text()
    config = server.config_path.read_text()
    assert 'save ""' in config and "appendonly no" in config and f"bind {server.host}\n" in config


def test_unauthenticated_client_gets_noauth(server: RedisServer) -> None:
    assert raw_reply(server.port, b"PING\r\n").startswith(b"-NOAUTH ")
    assert raw_reply(server.port, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").startswith(b"-NOAUTH ")
    for protocol in (2, 3):  # RESP2 sends the command as is, RESP3 starts with HELLO 3
        anonymous = redis.Redis(server.host, server.port, protocol=protocol, socket_timeout=5, retry=no_retry())
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()


def test_admin_client(server: RedisServer) -> None:
    admin = server.client()
    assert admin.ping() is True
    assert admin.acl_whoami() in ("default", b"default")  # str under RESP3, bytes under RESP2
    admin.set("peer-test:k", "v")
    assert admin.get("peer-test:k") == b"v"  # redis-py's default: no decode_responses
    other_db = server.client(db=3)
    assert other_db.get("peer-test:k") is None
    assert any(entry["user"] == "default" and entry["db"] == "3" for entry in by_name(server, "peer-admin"))


@pytest.mark.parametrize("protocol", [2, 3])  # AUTH <user> <pw> / HELLO 3 AUTH <user> <pw>
def test_acl_user_login_shows_in_client_list(server: RedisServer, protocol: int) -> None:
    name = f"acl-check-{protocol}"
    user = redis.Redis(
        server.host,
        server.port,
        username=server.acl_user,
        password=server.acl_password,
        client_name=name,
        protocol=protocol,
        decode_responses=True,
        socket_timeout=5,
    )
    try:
        assert user.ping() is True
        assert user.acl_whoami() == server.acl_user
        user.set("peer-test:acl", "x")
        [entry] = by_name(server, name)
        assert entry["user"] == server.acl_user
        assert entry["laddr"] == f"127.0.0.1:{server.port}"
    finally:
        user.close()


def test_wrong_password_is_refused(server: RedisServer) -> None:
    wrong = redis.Redis(
        server.host, server.port, username=server.acl_user, password="not-it", socket_timeout=5, retry=no_retry()
    )
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()


def test_tls_port(server: RedisServer) -> None:
    assert server.tls_port is not None
    tls = redis.Redis(
        server.host,
        server.tls_port,
        username=server.acl_user,
        password=server.acl_password,
        client_name="tls-check",
        ssl=True,
        ssl_ca_certs=str(server.ca_path),
        decode_responses=True,
        socket_timeout=5,
    )
    try:
        assert tls.ping() is True
        assert isinstance(tls.connection_pool.get_connection(), redis.SSLConnection)
        [entry] = by_name(server, "tls-check")
        assert entry["user"] == server.acl_user and entry["laddr"] == f"127.0.0.1:{server.tls_port}"
    finally:
        tls.close()


def test_tls_port_rejects_other_ca(server: RedisServer, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    tls = redis.Redis(
        server.host, server.tls_port, ssl=True, ssl_ca_certs=str(other_ca), socket_timeout=5, retry=no_retry()
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        tls.ping()
    tls.close()


def test_stop_reaps_and_persists_nothing(tmp_path: Path) -> None:
    peer = RedisServer(tmp_path / "redis").start()
    assert peer.tls_port is None and peer.ca_path is None
    pid = peer.pid
    assert pid is not None
    peer.client().set("k", "v")
    peer.stop()
    peer.stop()  # idempotent
    assert peer.pid is None
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", peer.port), timeout=1):
        pass
    assert not list(peer.workdir.glob("*.rdb")) and not list(peer.workdir.glob("appendonly*"))
    assert "Ready to accept connections" in peer.log_text()
