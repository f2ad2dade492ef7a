"""What the sync and async clients share: address, token, headers, transport-error mapping."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from vault_proxy import __version__
from vault_proxy.client.addr import VaultAddress, parse_addr
from vault_proxy.client.errors import VaultConnectionError, VaultError
from vault_proxy.client.session import resolve_token

USER_AGENT = f"vault-proxy-python/{__version__}"
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0


class ClientConfig:
    """Resolved settings of a client: where the vault is, which token, TLS and timeouts."""

    def __init__(
        self,
        addr: str | None,
        token: str | None,
        timeout: float | None,
        allow_insecure: bool,
        verify: bool | str | ssl.SSLContext,
    ) -> None:
        self.address: VaultAddress = parse_addr(addr, allow_insecure=allow_insecure)
        self.token: str | None = resolve_token(token)
        connect = CONNECT_TIMEOUT if timeout is None else min(CONNECT_TIMEOUT, timeout)
        self.timeout = httpx.Timeout(timeout, connect=connect)
        self.verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments shared by ``httpx.Client`` and ``httpx.AsyncClient`` (transport excluded)."""
        return {
            "base_url": self.address.base_url,
            "timeout": self.timeout,
            "headers": {"User-Agent": USER_AGENT},
            "follow_redirects": False,
            "trust_env": False,  # never send vault traffic through HTTP(S)_PROXY
        }

    def headers(self, extra: Mapping[str, str] | None = None, *, auth: bool = True) -> httpx.Headers:
        """``extra`` plus the caller's token; the token header always wins."""
        headers = httpx.Headers(extra or {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


@contextlib.contextmanager
def mapped_transport_errors(address: VaultAddress) -> Iterator[None]:
    """Turn httpx transport failures into :class:`VaultError` subclasses."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise VaultConnectionError(address.display, _reason(exc)) from None
    except httpx.TimeoutException:
        raise VaultError(0, f"request to vault-server at {address.display} timed out") from None
    except httpx.TransportError as exc:
        raise VaultError(0, f"request to vault-server at {address.display} failed: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
