"""The vault's own API (everything but the proxy) as blocking methods over any ``_send``.

:class:`~vault_proxy.client.sync.VaultClient` sends with httpx; the CLI's
:class:`~vault_proxy.client.lite.LiteClient` with the standard library, to start fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from vault_proxy.client import calls
from vault_proxy.client.models import ExecResult, FileInfo, ServiceInfo, Session, TokenInfo


class SyncApi:
    """Subclasses provide ``_send(call)`` and a ``token`` attribute."""

    token: str | None

    def _send(self, call: calls.Call) -> Any:
        raise NotImplementedError

    # --- health, unlock, lock -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "locked"|"unlocked"}``; needs no token."""
        return self._send(calls.health())

    def token_health(self) -> list[dict[str, Any]]:
        """``[{"name", "auth_type", "expires_at", "token_status"}]`` for the OAuth services you may use."""
        return self._send(calls.token_health())

    def oauth2_authorize(
        self,
        client_secret_file: str,
        service_name: str,
        base_url: str,
        scopes: Sequence[str] = (),
        redirect_uri: str | None = None,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Start the browser consent flow; open the returned ``auth_url``. The service appears on return."""
        return self._send(calls.oauth2_authorize(client_secret_file, service_name, base_url, scopes, redirect_uri,
                                                 overwrite))  # fmt: skip

    def ssh_exec(self, service: str, command: str, timeout: float | None = None) -> ExecResult:
        """Run ``command`` on an SSH service. A non-zero exit code is a result, not an error."""
        return self._send(calls.ssh_exec(service, command, timeout))

    def ssh_upload(self, service: str, content: Any, remote_path: str, mode: str = "0644") -> dict[str, Any]:
        """Upload bytes or a binary file object (≤ 50 MiB, streamed) to ``remote_path`` with ``mode`` (octal).
        Returns ``{"remote_path", "size", "mode"}``."""
        return self._send(calls.ssh_upload(service, content, remote_path, mode))

    def ssh_download(self, service: str, remote_path: str) -> bytes:
        """The bytes of ``remote_path`` on an SSH service (≤ 50 MiB)."""
        return self._send(calls.ssh_download(service, remote_path))

    def session(self, proto: str, service: str, timeout: int | None = None, client_secret: bool = True) -> Session:
        """Open an auth-only TCP session (``proto``: imap, smtp, redis or postgres): the vault logs in
        upstream and returns ``(addr, expires_at)``: ``127.0.0.1:PORT`` for one client connection, which
        logs in with ``.client_secret`` as its password (``client_secret=False``: any password works)."""
        return self._send(calls.session(proto, service, timeout, client_secret))

    def unlock(self, password: str) -> TokenInfo:
        """Unlock (or create) the vault; returns the admin Token object and uses its id from now on."""
        token = self._send(calls.unlock(password))
        self.token = token["id"]
        return token

    def lock(self) -> dict[str, Any]:
        """Lock the vault (revokes every token, this client's included)."""
        result = self._send(calls.lock())
        self.token = None
        return result

    def change_password(self, current: str, new: str) -> dict[str, Any]:
        """Change the master password."""
        return self._send(calls.change_password(current, new))

    # --- services -------------------------------------------------------------------------

    def list_services(self) -> list[ServiceInfo]:
        """ServiceInfo of every service this token may see, sorted by name."""
        return self._send(calls.list_services())

    def get_service(self, name: str) -> ServiceInfo:
        """ServiceInfo of one service (never holds a secret)."""
        return self._send(calls.get_service(name))

    def add_service(self, service: Mapping[str, Any]) -> ServiceInfo:
        """Create or replace a service from its JSON body (SPEC §8); returns its ServiceInfo."""
        return self._send(calls.add_service(service))

    def update_service(self, name: str, service: Mapping[str, Any]) -> ServiceInfo:
        """Replace service ``name`` (the name comes from the path); returns its ServiceInfo."""
        return self._send(calls.update_service(name, service))

    def remove_service(self, name: str) -> dict[str, Any]:
        """Delete a service."""
        return self._send(calls.remove_service(name))

    # --- tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        scope: str = "proxy",
        services: list[str] | None = None,
        ttl: str | int | float | timedelta | None = None,
        name: str | None = None,
    ) -> TokenInfo:
        """Mint a token (``services`` restricts a proxy token; ``ttl`` like ``"2h"`` or seconds)."""
        return self._send(calls.create_token(scope, services, ttl, name))

    def list_tokens(self) -> list[TokenInfo]:
        """Live tokens, by ``id_prefix`` (full ids are never listed)."""
        return self._send(calls.list_tokens())

    def revoke_token(self, id_or_prefix: str) -> dict[str, Any]:
        """Revoke a token by its full id or a unique prefix of ≥ 8 hex chars."""
        return self._send(calls.revoke_token(id_or_prefix))

    # --- files ----------------------------------------------------------------------------

    def upload_file(self, name: str, data: bytes, mime_type: str | None = None) -> FileInfo:
        """Store a file (≤ 5 MiB); ``mime_type`` is guessed from ``name`` when omitted."""
        return self._send(calls.upload_file(name, data, mime_type))

    def list_files(self) -> list[FileInfo]:
        """``[{"name", "mime_type", "size"}]`` sorted by name."""
        return self._send(calls.list_files())

    def get_file(self, name: str) -> bytes:
        """The stored bytes of a file."""
        return self._send(calls.get_file(name))

    def delete_file(self, name: str) -> dict[str, Any]:
        """Delete a file (refused with 409 while a service references it)."""
        return self._send(calls.delete_file(name))
