"""The synchronous SDK client."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx

from vault_proxy.client import calls
from vault_proxy.client.errors import VaultError
from vault_proxy.client.transport import DEFAULT_TIMEOUT, ClientConfig, mapped_transport_errors


class VaultClient:
    """A client of vault-server's HTTP API.

    ``addr`` defaults to ``$VAULT_ADDR`` (else ``http://127.0.0.1:8390``; ``unix:/path.sock`` works
    too); ``token`` defaults to ``$VAULT_TOKEN``, else the session file written by
    ``vault-cli unlock``. Plain http is refused to a non-loopback host unless ``allow_insecure``.
    ``verify`` is passed to TLS (``False``, a CA bundle path, or an ``ssl.SSLContext``).

    Every method of the vault's own API raises :class:`VaultError` on a non-2xx answer, and
    :class:`VaultConnectionError` when the server cannot be reached. Results are plain
    dicts/lists shaped as in ``docs/api.md``.
    """

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        allow_insecure: bool = False,
        *,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self._config = ClientConfig(addr, token, timeout, allow_insecure, verify)
        self._http = httpx.Client(
            transport=self._config.address.transport(verify=self._config.verify),
            **self._config.client_kwargs(),
        )

    # --- plumbing -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The vault address in use (for messages)."""
        return self._config.address.display

    @property
    def token(self) -> str | None:
        """The token sent with each request (set by :meth:`unlock`, cleared by :meth:`lock`)."""
        return self._config.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._config.token = value

    def close(self) -> None:
        """Close the underlying connections."""
        self._http.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the token
        return f"VaultClient(addr={self.addr!r})"

    def _send(self, call: calls.Call) -> Any:
        with mapped_transport_errors(self._config.address):
            response = self._http.request(
                call.method,
                call.path,
                headers=self._config.headers(auth=call.auth),
                **call.request_kwargs(),
            )
        return calls.decode(call, response)

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

    def ssh_exec(self, service: str, command: str, timeout: float | None = None) -> dict[str, Any]:
        """Run ``command`` on an SSH service: ``{"stdout", "stderr", "exit_code", "duration_ms", "timed_out",
        "stdout_truncated", "stderr_truncated"}``. A non-zero exit code is a result, not an error."""
        return self._send(calls.ssh_exec(service, command, timeout))

    def ssh_upload(self, service: str, content: Any, remote_path: str, mode: str = "0644") -> dict[str, Any]:
        """Upload bytes or a binary file object (≤ 50 MiB, streamed) to ``remote_path`` with ``mode`` (octal).
        Returns ``{"remote_path", "size", "mode"}``."""
        return self._send(calls.ssh_upload(service, content, remote_path, mode))

    def ssh_download(self, service: str, remote_path: str) -> bytes:
        """The bytes of ``remote_path`` on an SSH service (≤ 50 MiB)."""
        return self._send(calls.ssh_download(service, remote_path))

    def session(self, proto: str, service: str, timeout: int | None = None) -> dict[str, Any]:
        """Open an auth-only TCP session (``proto``: imap, smtp, redis or postgres): the vault logs in
        upstream and returns ``{"addr": "127.0.0.1:PORT", "expires_at"}`` for one client connection."""
        return self._send(calls.session(proto, service, timeout))

    def unlock(self, password: str) -> dict[str, Any]:
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

    def list_services(self) -> list[dict[str, Any]]:
        """ServiceInfo of every service this token may see, sorted by name."""
        return self._send(calls.list_services())

    def get_service(self, name: str) -> dict[str, Any]:
        """ServiceInfo of one service (never holds a secret)."""
        return self._send(calls.get_service(name))

    def add_service(self, service: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a service from its JSON body (SPEC §8); returns its ServiceInfo."""
        return self._send(calls.add_service(service))

    def update_service(self, name: str, service: Mapping[str, Any]) -> dict[str, Any]:
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
    ) -> dict[str, Any]:
        """Mint a token (``services`` restricts a proxy token; ``ttl`` like ``"2h"`` or seconds)."""
        return self._send(calls.create_token(scope, services, ttl, name))

    def list_tokens(self) -> list[dict[str, Any]]:
        """Live tokens, by ``id_prefix`` (full ids are never listed)."""
        return self._send(calls.list_tokens())

    def revoke_token(self, id_or_prefix: str) -> dict[str, Any]:
        """Revoke a token by its full id or a unique prefix of ≥ 8 hex chars."""
        return self._send(calls.revoke_token(id_or_prefix))

    # --- files ----------------------------------------------------------------------------

    def upload_file(self, name: str, data: bytes, mime_type: str | None = None) -> dict[str, Any]:
        """Store a file (≤ 5 MiB); ``mime_type`` is guessed from ``name`` when omitted."""
        return self._send(calls.upload_file(name, data, mime_type))

    def list_files(self) -> list[dict[str, Any]]:
        """``[{"name", "mime_type", "size"}]`` sorted by name."""
        return self._send(calls.list_files())

    def get_file(self, name: str) -> bytes:
        """The stored bytes of a file."""
        return self._send(calls.get_file(name))

    def delete_file(self, name: str) -> dict[str, Any]:
        """Delete a file (refused with 409 while a service references it)."""
        return self._send(calls.delete_file(name))

    # --- proxy ----------------------------------------------------------------------------

    def proxy(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
    ) -> httpx.Response:
        """Send a request through the vault to ``service``; returns the upstream's response.

        The upstream's own statuses (404, 500, …) are returned, not raised. A
        :class:`VaultError` is raised only for answers the vault generated itself (bad token,
        unknown service, vault locked, SSRF refusal, upstream unreachable…): the server marks
        those with the response header ``X-Vault-Error: 1``.
        """
        with self.open_proxy(
            service, method, path, json=json, data=data, content=content, headers=headers, params=params
        ) as response:
            with mapped_transport_errors(self._config.address):
                response.read()
            return response

    @contextlib.contextmanager
    def open_proxy(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
    ) -> Iterator[httpx.Response]:
        """Like :meth:`proxy`, but yields the response before its body is read (for streaming)."""
        kwargs = calls.proxy_kwargs(json=json, data=data, content=content, params=params, headers=headers)
        kwargs["headers"] = self._config.headers(kwargs["headers"])
        url = calls.proxy_url(service, path)
        with (
            mapped_transport_errors(self._config.address),
            self._http.stream(method.upper(), url, **kwargs) as response,
        ):
            if calls.is_vault_error(response):
                response.read()
                raise VaultError(response.status_code, calls.error_message(response))
            yield response

    def proxy_stream(self, service: str, method: str, path: str, **kwargs: Any) -> Iterator[bytes]:
        """Yield the upstream's response body chunk by chunk as it arrives (SSE, LLM streams).

        Takes the same arguments as :meth:`proxy`; vault errors raise before the first chunk.
        """
        with (
            self.open_proxy(service, method, path, **kwargs) as response,
            mapped_transport_errors(self._config.address),
        ):
            yield from response.iter_bytes()
