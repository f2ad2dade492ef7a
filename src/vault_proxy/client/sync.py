"""The synchronous SDK client."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from vault_proxy.client import calls
from vault_proxy.client.api import SyncApi
from vault_proxy.client.errors import VaultError
from vault_proxy.client.transport import DEFAULT_TIMEOUT, ClientConfig, mapped_transport_errors


class VaultClient(SyncApi):
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
