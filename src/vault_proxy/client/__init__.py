"""The vault-proxy SDK (httpx). Never imports anything from the server side."""

from __future__ import annotations

from vault_proxy.client.errors import VaultConnectionError, VaultError

__all__ = ["AsyncVaultClient", "VaultClient", "VaultConnectionError", "VaultError"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-export keeps httpx out of plain imports
    if name == "VaultClient":
        from vault_proxy.client.sync import VaultClient

        return VaultClient
    if name == "AsyncVaultClient":
        from vault_proxy.client.aio import AsyncVaultClient

        return AsyncVaultClient
    raise AttributeError(f"module 'vault_proxy.client' has no attribute {name!r}")
