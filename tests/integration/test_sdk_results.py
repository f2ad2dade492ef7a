"""Typed SDK results (attributes and dict access, no secret in repr) and the CLI's standard-library client."""

from __future__ import annotations

import asyncio

import pytest
from helpers import bearer_service, unique

from vault_proxy import AsyncVaultClient, VaultClient, VaultError
from vault_proxy.client.errors import VaultConnectionError
from vault_proxy.client.lite import LiteClient
from vault_proxy.client.models import FileInfo, ServiceInfo, Session, TokenInfo


def test_typed_results_read_as_attributes_and_as_json(unlocked_server, secrets):
    secret = secrets.new("bearer")
    name = unique("svc")
    with VaultClient(unlocked_server.addr, token=unlocked_server.admin_token) as client:
        added = client.add_service(bearer_service(name, secret))
        assert isinstance(added, ServiceInfo) and added.name == name and added.auth_type == "bearer"
        assert added["base_url"] == added.base_url == "https://api.example.com/v1"
        assert dict(added) == added.to_dict() and added == client.get_service(name)
        assert secret not in repr(added) and secret not in repr(client.list_services())

        token = client.create_token("proxy", services=[name], ttl="1h", name="agent")
        assert isinstance(token, TokenInfo) and token.scope == "proxy" and token.services == [name]
        assert len(token.id or "") == 64 and token["id"] == token.id
        assert token.id not in repr(token)  # a new token's id is a secret: never in a repr
        listed = [t for t in client.list_tokens() if t.name == "agent"]
        assert listed[0].id is None and token.id.startswith(listed[0].id_prefix)

        stored = client.upload_file("notes.txt", b"hello")
        assert isinstance(stored, FileInfo) and (stored.name, stored.mime_type, stored.size) == (
            "notes.txt", "text/plain", 5)  # fmt: skip
        assert client.list_files() == [{"name": "notes.txt", "mime_type": "text/plain", "size": 5}]


def test_session_result_unpacks_and_async_results_are_typed(unlocked_server):
    session = Session.from_json({"addr": "127.0.0.1:4242", "expires_at": "2026-11-29T00:00:00Z"})
    addr, expires = session
    assert (addr, session.host, session.port, session["expires_at"]) == ("127.0.0.1:4242", "127.0.0.1", 4242, expires)
    with pytest.raises(KeyError):
        session["count"]

    async def run() -> list[ServiceInfo]:
        async with AsyncVaultClient(unlocked_server.addr, token=unlocked_server.admin_token) as client:
            await client.add_service(bearer_service(unique("svc"), "tok-" + unique("x")))
            return await client.list_services()

    services = asyncio.run(run())
    assert services and all(isinstance(s, ServiceInfo) for s in services)


def test_lite_client_matches_the_full_client(unlocked_server, secrets):
    name = unique("svc")
    with LiteClient(unlocked_server.addr, token=unlocked_server.admin_token) as lite:
        assert lite.health() == {"status": "unlocked"}
        assert lite.add_service(bearer_service(name, secrets.new("bearer"))).name == name
        with pytest.raises(VaultError) as missing:
            lite.get_service("no-such-service")
        assert missing.value.status_code == 404 and missing.value.message == 'service "no-such-service" not found'
        stored = lite.upload_file("blob.bin", bytes(range(256)))  # multipart: goes through the full client
        assert stored.size == 256 and lite.get_file("blob.bin") == bytes(range(256))
        with VaultClient(unlocked_server.addr, token=unlocked_server.admin_token) as full:
            assert lite.list_services() == full.list_services()
        for _ in range(3):  # one kept-alive connection serves consecutive calls
            assert lite.get_service(name).name == name


def test_lite_client_unreachable_server_is_a_connection_error():
    """(The unix-socket path is covered by test_cli.py's unix-socket test: the CLI uses this client.)"""
    with pytest.raises(VaultConnectionError) as down, LiteClient("http://127.0.0.1:9") as lite:
        lite.health()
    assert "127.0.0.1:9" in str(down.value)
