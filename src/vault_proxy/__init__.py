"""vault-proxy: a self-hosted secrets vault with a credential-injecting proxy.

This package root is the SDK facade::

    from vault_proxy import VaultClient, VaultError

    with VaultClient() as vault:          # VAULT_ADDR / VAULT_TOKEN / ~/.vault-proxy/session
        print(vault.list_services())

Names are resolved lazily, so ``import vault_proxy`` imports nothing heavy: the server's
dependencies (aiohttp, pydantic, cryptography) are never imported by the SDK, and httpx only
when a client class is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AsyncVaultClient", "VaultClient", "VaultConnectionError", "VaultError"]
__version__ = "0.1.0"

_LAZY = {
    "VaultClient": "vault_proxy.client.sync",
    "AsyncVaultClient": "vault_proxy.client.aio",
    "VaultError": "vault_proxy.client.errors",
    "VaultConnectionError": "vault_proxy.client.errors",
}

if TYPE_CHECKING:
    from vault_proxy.client.aio import AsyncVaultClient
    from vault_proxy.client.errors import VaultConnectionError, VaultError
    from vault_proxy.client.sync import VaultClient


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'vault_proxy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
