"""The Python SDK's proxy calls (sync and async) against the real server and HTTPS upstream."""

from __future__ import annotations

import json
import time

import pytest

from vault_proxy import AsyncVaultClient, VaultClient, VaultError


def test_sync_proxy_returns_upstream_answers_and_raises_only_vault_errors(proxy_env):
    name, secret = proxy_env.bearer()
    with VaultClient(proxy_env.server.addr, token=proxy_env.token()) as client:
        resp = client.proxy(name, "POST", "/echo/sdk-sync", json={"k": "v"}, params={"q": "a b"})
        assert resp.status_code == 200
        doc = resp.json()
        assert doc["raw_path"] == "/echo/sdk-sync?q=a+b"
        assert json.loads(doc["body"]) == {"k": "v"}
        assert ["Authorization", "Bearer [REDACTED]"] in doc["headers"]  # injected, then scrubbed on the way back
        assert secret not in resp.text

        not_found = client.proxy(name, "GET", "/status/404")
        assert not_found.status_code == 404 and not_found.text == "upstream status 404"

        with pytest.raises(VaultError) as missing:
            client.proxy("no-such-service", "GET", "/echo")
        assert missing.value.status_code == 404 and "not found" in str(missing.value)
    upstream_seen = proxy_env.upstream.only("sdk-sync")
    assert ("Authorization", f"Bearer {secret}") in upstream_seen.headers


def test_sync_proxy_stream_yields_the_first_event_early(proxy_env):
    name, _ = proxy_env.bearer()
    with VaultClient(proxy_env.server.addr, token=proxy_env.token()) as client:
        started = time.monotonic()
        arrivals = []
        for chunk in client.proxy_stream(name, "GET", "/sse", params={"n": "4", "delay": "0.5"}):
            arrivals.append((time.monotonic() - started, chunk))
    body = b"".join(chunk for _, chunk in arrivals)
    assert body.count(b"event: tick") == 4
    assert arrivals[0][0] < 0.9, arrivals[0][0]
    assert arrivals[-1][0] >= 1.4, arrivals[-1][0]


async def test_async_proxy_and_stream(proxy_env):
    name, secret = proxy_env.bearer()
    async with AsyncVaultClient(proxy_env.server.addr, token=proxy_env.token()) as client:
        resp = await client.proxy(name, "GET", "/echo/sdk-async")
        assert resp.status_code == 200 and secret not in resp.text
        started = time.monotonic()
        first = None
        chunks = []
        async for chunk in client.proxy_stream(name, "GET", "/sse", params={"n": "3", "delay": "0.5"}):
            first = first if first is not None else time.monotonic() - started
            chunks.append(chunk)
        assert first is not None and first < 0.9
        assert b"".join(chunks).count(b"event: tick") == 3
    async with AsyncVaultClient(proxy_env.server.addr, token="0" * 64) as stranger:
        with pytest.raises(VaultError) as refused:
            await stranger.proxy(name, "GET", "/echo")
        assert refused.value.status_code == 401
    assert ("Authorization", f"Bearer {secret}") in proxy_env.upstream.only("sdk-async").headers
