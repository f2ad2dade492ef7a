"""The asyncio SDK client: :class:`VaultClient`'s API with ``await``."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx

from vault_proxy.client import calls
from vault_proxy.client.api import SyncApi
from vault_proxy.client.errors import VaultError
from vault_proxy.client.models import ExecResult, FileInfo, ServiceInfo, Session, TokenInfo
from vault_proxy.client.transport import DEFAULT_TIMEOUT, ClientConfig, mapped_transport_errors


class AsyncVaultClient:
    """Async twin of :class:`vault_proxy.VaultClient`; same arguments, results and errors."""

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
        self._http = httpx.AsyncClient(
            transport=self._config.address.async_transport(verify=self._config.verify),
            **self._config.client_kwargs(),
        )

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

    async def aclose(self) -> None:
        """Close the underlying connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncVaultClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncVaultClient(addr={self.addr!r})"

    async def _send(self, call: calls.Call) -> Any:
        with mapped_transport_errors(self._config.address):
            response = await self._http.request(
                call.method,
                call.path,
                headers=self._config.headers(auth=call.auth),
                **call.request_kwargs(),
            )
        return calls.decode(call, response)

    async def health(self) -> dict[str, Any]:
        return await self._send(calls.health())

    async def token_health(self) -> list[dict[str, Any]]:
        """See ``VaultClient.token_health``."""
        return await self._send(calls.token_health())

    async def oauth2_authorize(
        self,
        client_secret_file: str,
        service_name: str,
        base_url: str,
        scopes: Sequence[str] = (),
        redirect_uri: str | None = None,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """See ``VaultClient.oauth2_authorize``."""
        return await self._send(calls.oauth2_authorize(client_secret_file, service_name, base_url, scopes,
                                                       redirect_uri, overwrite))  # fmt: skip

    async def ssh_exec(self, service: str, command: str, timeout: float | None = None) -> ExecResult:
        """See ``VaultClient.ssh_exec``."""
        return await self._send(calls.ssh_exec(service, command, timeout))

    async def ssh_upload(self, service: str, content: Any, remote_path: str, mode: str = "0644") -> dict[str, Any]:
        """See ``VaultClient.ssh_upload`` (``content``: bytes)."""
        return await self._send(calls.ssh_upload(service, content, remote_path, mode))

    async def ssh_download(self, service: str, remote_path: str) -> bytes:
        """See ``VaultClient.ssh_download``."""
        return await self._send(calls.ssh_download(service, remote_path))

    async def session(
        self, proto: str, service: str, timeout: int | None = None, client_secret: bool = True
    ) -> Session:
        """See ``VaultClient.session``."""
        return await self._send(calls.session(proto, service, timeout, client_secret))

    async def unlock(self, password: str) -> TokenInfo:
        token = await self._send(calls.unlock(password))
        self.token = token["id"]
        return token

    async def lock(self) -> dict[str, Any]:
        result = await self._send(calls.lock())
        self.token = None
        return result

    async def change_password(self, current: str, new: str) -> dict[str, Any]:
        return await self._send(calls.change_password(current, new))

    async def list_services(self) -> list[ServiceInfo]:
        return await self._send(calls.list_services())

    async def get_service(self, name: str) -> ServiceInfo:
        return await self._send(calls.get_service(name))

    async def add_service(self, service: Mapping[str, Any]) -> ServiceInfo:
        return await self._send(calls.add_service(service))

    async def update_service(self, name: str, service: Mapping[str, Any]) -> ServiceInfo:
        return await self._send(calls.update_service(name, service))

    async def remove_service(self, name: str) -> dict[str, Any]:
        return await self._send(calls.remove_service(name))

    async def create_token(
        self,
        scope: str = "proxy",
        services: list[str] | None = None,
        ttl: str | int | float | timedelta | None = None,
        name: str | None = None,
    ) -> TokenInfo:
        return await self._send(calls.create_token(scope, services, ttl, name))

    async def list_tokens(self) -> list[TokenInfo]:
        return await self._send(calls.list_tokens())

    async def revoke_token(self, id_or_prefix: str) -> dict[str, Any]:
        return await self._send(calls.revoke_token(id_or_prefix))

    async def upload_file(self, name: str, data: bytes, mime_type: str | None = None) -> FileInfo:
        return await self._send(calls.upload_file(name, data, mime_type))

    async def list_files(self) -> list[FileInfo]:
        return await self._send(calls.list_files())

    async def get_file(self, name: str) -> bytes:
        return await self._send(calls.get_file(name))

    async def delete_file(self, name: str) -> dict[str, Any]:
        return await self._send(calls.delete_file(name))

    async def proxy(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """See :meth:`VaultClient.proxy` (raises only on ``X-Vault-Error: 1`` answers)."""
        async with self.open_proxy(service, method, path, **kwargs) as response:
            with mapped_transport_errors(self._config.address):
                await response.aread()
            return response

    @contextlib.asynccontextmanager
    async def open_proxy(
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
    ) -> AsyncIterator[httpx.Response]:
        """See :meth:`VaultClient.open_proxy`."""
        kwargs = calls.proxy_kwargs(json=json, data=data, content=content, params=params, headers=headers)
        kwargs["headers"] = self._config.headers(kwargs["headers"])
        url = calls.proxy_url(service, path)
        with mapped_transport_errors(self._config.address):
            async with self._http.stream(method.upper(), url, **kwargs) as response:
                if calls.is_vault_error(response):
                    await response.aread()
                    raise VaultError(response.status_code, calls.error_message(response))
                yield response

    async def proxy_stream(self, service: str, method: str, path: str, **kwargs: Any) -> AsyncIterator[bytes]:
        """See :meth:`VaultClient.proxy_stream`."""
        async with self.open_proxy(service, method, path, **kwargs) as response:
            with mapped_transport_errors(self._config.address):
                async for chunk in response.aiter_bytes():
                    yield chunk


# The awaitable twins document themselves as their blocking originals do.
for _name, _method in vars(AsyncVaultClient).items():
    if callable(_method) and not _method.__doc__ and hasattr(SyncApi, _name):
        _method.__doc__ = getattr(SyncApi, _name).__doc__
