"""A TCP session lives no longer than what allowed it (found by the second red-team review of #15).

Before: only a lock ended sessions. A revoked or expired token kept its logged-in Redis/Postgres
connection (and could still use a pending port for up to 300 s); a service narrowed to another ACL user
or deleted kept its sessions logged in with the old credential. Real redis-server, real redis-py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from helpers import create_token, unique
from redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_peer(tmp_path_factory) -> RedisServer:
    peer = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield peer
    peer.stop()


def add_redis(env, peer: RedisServer) -> str:
    env.secrets.add(peer.password)
    name = unique("cache")
    body = {"name": name, "auth": {"type": "redis", "redis_host": peer.host, "redis_port": peer.port,
                                   "redis_password": peer.password}}  # fmt: skip
    resp = env.server.http.post("/services", json=body, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def open_session(env, name: str, token: str) -> redis.Redis:
    resp = env.server.http.post(f"/redis/{name}/session", params={"timeout": 60},
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    host, port = body["addr"].rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), password=body["client_secret"], socket_timeout=5)


def ended(client: redis.Redis, seconds: float = 5.0) -> bool:
    """Whether the session stops answering within ``seconds`` (polled, bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError):
            return True
        time.sleep(0.1)
    return False


def proxy_token(env, name: str, **extra) -> tuple[str, str]:
    body = create_token(env.server, {"scope": "proxy", "services": [name], **extra})
    return body["id"], body["id"][:8]


def test_revoking_the_token_ends_its_active_and_pending_sessions(proxy_env, redis_peer):
    name = add_redis(proxy_env, redis_peer)
    token, prefix = proxy_token(proxy_env, name)
    active = open_session(proxy_env, name, token)
    assert active.ping() is True
    pending = open_session(proxy_env, name, token)  # not connected yet
    resp = proxy_env.server.http.delete(f"/tokens/{prefix}", headers=proxy_env.server.admin_headers())
    assert resp.status_code == 200
    assert ended(active)
    with pytest.raises(redis.ConnectionError):
        pending.ping()


def test_a_sibling_token_keeps_its_session(proxy_env, redis_peer):
    name = add_redis(proxy_env, redis_peer)
    doomed, prefix = proxy_token(proxy_env, name)
    kept, _ = proxy_token(proxy_env, name)
    other = open_session(proxy_env, name, kept)
    assert other.ping() is True
    proxy_env.server.http.delete(f"/tokens/{prefix}", headers=proxy_env.server.admin_headers())
    assert not ended(other, 1.0)
    assert doomed  # revoked, never used


@pytest.mark.parametrize("change", ["update", "delete"])
def test_changing_or_deleting_the_service_ends_its_sessions(proxy_env, redis_peer, change):
    name = add_redis(proxy_env, redis_peer)
    token, _ = proxy_token(proxy_env, name)
    client = open_session(proxy_env, name, token)
    assert client.set("k", "v") is True
    headers = proxy_env.server.admin_headers()
    if change == "update":
        body = {"auth": {"type": "redis", "redis_host": redis_peer.host, "redis_port": redis_peer.port,
                         "redis_password": redis_peer.password, "redis_db": 1}}  # fmt: skip
        resp = proxy_env.server.http.put(f"/services/{name}", json=body, headers=headers)
    else:
        resp = proxy_env.server.http.delete(f"/services/{name}", headers=headers)
    assert resp.status_code == 200, resp.text
    assert ended(client)


def test_a_session_ends_when_its_token_expires(proxy_env, redis_peer):
    name = add_redis(proxy_env, redis_peer)
    token, _ = proxy_token(proxy_env, name, ttl="3s")
    client = open_session(proxy_env, name, token)
    assert client.ping() is True
    assert ended(client, 8.0)


@pytest.mark.parametrize("timeout", ["１", "١٠", "+5", "5 "])
def test_session_timeout_takes_ascii_digits_only(proxy_env, redis_peer, timeout):
    name = add_redis(proxy_env, redis_peer)
    resp = proxy_env.server.http.post(f"/redis/{name}/session", params={"timeout": timeout},
                                      headers={"Authorization": f"Bearer {proxy_env.token()}"})  # fmt: skip
    assert resp.status_code == 400 and "timeout" in resp.json()["error"]
