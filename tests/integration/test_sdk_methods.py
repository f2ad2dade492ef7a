"""Every SDK method of the vault's own API against a real server, the blocking and the async client alike.

(The proxy calls are in test_proxy_sdk.py, SSH in test_ssh_exec.py, sessions in the session tests.)
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import bearer_service, unique

from vault_proxy import AsyncVaultClient, VaultClient, VaultError


def _blocking(addr: str, password: str, new_password: str) -> list[str]:
    """Runs every method once; returns the names of the services it saw at the end."""
    with VaultClient(addr) as vault:
        assert vault.health() == {"status": "locked"}
        admin = vault.unlock(password)
        assert admin.scope == "admin" and vault.token == admin.id
        name = unique("svc")
        assert vault.add_service(bearer_service(name, "sdk-SECRET-" + unique("t"))).name == name
        body = bearer_service(name, "sdk-SECRET-" + unique("t"), base_url="https://api2.example.com")
        assert vault.update_service(name, body).base_url == "https://api2.example.com"
        assert vault.get_service(name).auth_type == "bearer"
        token = vault.create_token("proxy", services=[name], ttl=3600, name="sdk")
        assert any(t.name == "sdk" for t in vault.list_tokens())
        assert vault.revoke_token(token.id[:12]) == {"status": "revoked"}
        assert vault.upload_file("a.json", b'{"k": 1}').mime_type == "application/json"
        assert [f.name for f in vault.list_files()] == ["a.json"] and vault.get_file("a.json") == b'{"k": 1}'
        assert vault.delete_file("a.json") == {"status": "deleted"}
        assert vault.token_health() == []
        seen = [s.name for s in vault.list_services()]
        with pytest.raises(VaultError) as wrong:
            vault.change_password("not-the-password", new_password)
        assert wrong.value.status_code == 401
        assert vault.change_password(password, new_password) == {"status": "password changed"}
        assert vault.remove_service(name) == {"status": "deleted"}
        assert vault.lock() == {"status": "locked"} and vault.token is None
        with pytest.raises(VaultError) as locked:
            vault.list_services()
        assert locked.value.status_code == 401
    return seen


async def _awaited(addr: str, password: str, new_password: str) -> list[str]:
    async with AsyncVaultClient(addr) as vault:
        assert await vault.health() == {"status": "locked"}
        admin = await vault.unlock(password)
        assert admin.scope == "admin" and vault.token == admin.id
        name = unique("svc")
        assert (await vault.add_service(bearer_service(name, "sdk-SECRET-" + unique("t")))).name == name
        body = bearer_service(name, "sdk-SECRET-" + unique("t"), base_url="https://api2.example.com")
        assert (await vault.update_service(name, body)).base_url == "https://api2.example.com"
        assert (await vault.get_service(name)).auth_type == "bearer"
        token = await vault.create_token("proxy", services=[name], ttl="1h", name="sdk")
        assert any(t.name == "sdk" for t in await vault.list_tokens())
        assert await vault.revoke_token(token.id[:12]) == {"status": "revoked"}
        assert (await vault.upload_file("b.bin", b"\x00\x01")).size == 2
        assert await vault.get_file("b.bin") == b"\x00\x01" and len(await vault.list_files()) == 1
        assert await vault.delete_file("b.bin") == {"status": "deleted"}
        assert await vault.token_health() == []
        seen = [s.name for s in await vault.list_services()]
        assert await vault.change_password(password, new_password) == {"status": "password changed"}
        assert await vault.remove_service(name) == {"status": "deleted"}
        assert await vault.lock() == {"status": "locked"}
        with pytest.raises(VaultError):
            await vault.get_service(name)
    return seen


def test_every_blocking_method(server, secrets):
    password, new_password = secrets.new("master-pw"), secrets.new("new-pw")
    assert len(_blocking(server.addr, password, new_password)) == 1
    with VaultClient(server.addr) as vault:
        vault.unlock(new_password)  # the changed password is the one that opens the vault now


def test_every_async_method(server, secrets):
    password, new_password = secrets.new("master-pw"), secrets.new("new-pw")
    assert len(asyncio.run(_awaited(server.addr, password, new_password))) == 1
    with VaultClient(server.addr) as vault:
        vault.unlock(new_password)
