"""Redis sessions against a real redis-server (requirepass, an ACL user, TLS) with redis-py as the client."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import redis
from helpers import unique
from redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_peer(upstream, tmp_path_factory) -> RedisServer:
    peer = RedisServer(Path(tmp_path_factory.mktemp("redis")), tls_ca=upstream.ca).start()
    yield peer
    peer.stop()


def _service(env, peer: RedisServer, **auth) -> str:
    body = {"type": "redis", "redis_host": peer.host, "redis_port": peer.port, **auth}
    name = unique("redis")
    resp = env.server.http.post("/services", json={"name": name, "auth": body}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _session(env, name: str, **params):
    return env.server.http.post(f"/redis/{name}/session", params=params,
                                headers={"Authorization": f"Bearer {env.token()}"})  # fmt: skip


def _client(body: dict, **kwargs) -> redis.Redis:
    """redis-py on a session: the one-time client secret is its password."""
    host, port = body["addr"].rsplit(":", 1)
    if "password" not in kwargs:
        kwargs["password"] = body["client_secret"]
    return redis.Redis(host=host, port=int(port), socket_timeout=10, **kwargs)


def test_redis_py_logs_in_with_the_client_secret(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    resp = _session(proxy_env, name)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["addr"].startswith("127.0.0.1:") and body["expires_at"].endswith("Z")
    assert len(body["client_secret"]) == 32
    client = _client(body)
    key = unique("k")
    assert client.set(key, "v1") is True and client.get(key) == b"v1"
    client.close()
    assert redis_peer.client().get(key) == b"v1"
    time.sleep(0.3)
    line = [e for e in proxy_env.audit() if e.get("action") == "redis.session" and e.get("service") == name][-1]
    assert line["bytes_to_upstream"] > 0 and line["bytes_to_client"] > 0


def test_acl_user_and_database(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.acl_password)
    name = _service(proxy_env, redis_peer, redis_username=redis_peer.acl_user, redis_password=redis_peer.acl_password,
                    redis_db=2)  # fmt: skip
    client = _client(_session(proxy_env, name).json(), protocol=3)  # HELLO 3 AUTH default <client secret>
    key = unique("k")
    client.set(key, "in-db-2")
    assert client.client_info()["user"] == redis_peer.acl_user  # (ACL WHOAMI: every ACL command is refused)
    client.close()
    assert redis_peer.client(db=2).get(key) == b"in-db-2"
    assert redis_peer.client(db=0).get(key) is None


def test_tls_upstream(proxy_env, redis_peer):
    assert redis_peer.tls_port
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password, redis_tls=True)
    resp = proxy_env.server.http.put(
        f"/services/{name}",
        json={"name": name, "auth": {"type": "redis", "redis_host": redis_peer.host, "redis_port": redis_peer.tls_port,
                                     "redis_password": redis_peer.password, "redis_tls": True}},
        headers=proxy_env.server.admin_headers(),
    )  # fmt: skip
    assert resp.status_code == 200
    client = _client(_session(proxy_env, name).json())
    assert client.ping() is True
    client.close()


def test_wrong_password_is_a_502_naming_the_step(proxy_env, redis_peer):
    wrong = proxy_env.secrets.new("wrong-password")
    name = _service(proxy_env, redis_peer, redis_password=wrong)
    resp = _session(proxy_env, name)
    assert resp.status_code == 502 and resp.json()["error"].startswith("redis auth failed")
    assert wrong not in resp.text


def test_one_client_only_and_pipelined_bytes_kept(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    body = _session(proxy_env, name).json()
    host, port = body["addr"].rsplit(":", 1)
    first = socket.create_connection((host, int(port)), timeout=5)
    key = unique("pipe")
    login = b"AUTH %s\r\n" % body["client_secret"].encode()
    first.sendall(login + b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nok\r\nGET %s\r\n" % (len(key), key.encode(),
                                                                                          key.encode()))  # fmt: skip
    seen = b""
    while seen.count(b"\r\n") < 4:
        seen += first.recv(1024)
    assert seen == b"+OK\r\n+OK\r\n$2\r\nok\r\n"
    with pytest.raises(OSError):
        second = socket.create_connection((host, int(port)), timeout=2)
        second.settimeout(2)
        if second.recv(1) == b"":
            raise ConnectionResetError("closed at once")
    first.close()


def test_unused_listener_closes_at_timeout(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    host, port = _session(proxy_env, name, timeout=1).json()["addr"].rsplit(":", 1)
    time.sleep(1.5)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)
    assert _session(proxy_env, name, timeout=301).status_code == 400


def test_lock_ends_active_sessions(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    client = _client(_session(proxy_env, name).json())
    assert client.ping() is True
    proxy_env.relock()
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_cli_prints_the_address_then_the_client_secret(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    done = proxy_env.server.cli("redis", name, "--timeout", "10", env={"VAULT_TOKEN": proxy_env.token()})
    assert done.returncode == 0, done.stderr
    addr, secret = done.stdout.splitlines()
    assert _client({"addr": addr, "client_secret": secret}).ping() is True
    done = proxy_env.server.cli("redis", name, "--env", env={"VAULT_TOKEN": proxy_env.token()})
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["REDISCLI_AUTH"] == env["VAULT_SESSION_SECRET"] and done.stdout.splitlines()[-1].startswith("export ")
    client = _client({"addr": env["VAULT_SESSION_ADDR"], "client_secret": env["REDISCLI_AUTH"]})
    assert client.ping() is True


def test_any_password_works_when_the_session_has_no_client_secret(proxy_env, redis_peer):
    proxy_env.secrets.add(redis_peer.password)
    name = _service(proxy_env, redis_peer, redis_password=redis_peer.password)
    body = _session(proxy_env, name, client_secret="false").json()
    assert "client_secret" not in body
    client = _client(body, password="not-the-real-one")
    assert client.ping() is True
    client.close()
    assert _session(proxy_env, name, client_secret="no").status_code == 400
