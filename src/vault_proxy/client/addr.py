"""Parse ``VAULT_ADDR``: ``http(s)://host:port`` or ``unix:/path/to.sock``.

Plain ``http://`` is allowed only to a loopback host: a token sent in clear over a network is a
leaked token. ``allow_insecure=True`` lifts that (e.g. a trusted private link).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vault_proxy.client.errors import VaultAddressError

if TYPE_CHECKING:
    import httpx

DEFAULT_ADDR = "http://127.0.0.1:8390"
ADDR_ENV = "VAULT_ADDR"
UDS_BASE_URL = "http://localhost"


@dataclass(frozen=True)
class VaultAddress:
    """Where the vault server listens, as httpx needs it."""

    display: str  # what to show users (the address as given, normalised)
    base_url: str  # the httpx base URL (``http://localhost`` for a unix socket)
    uds: str | None = None  # unix socket path, when any

    def transport(self, **kwargs: object) -> httpx.HTTPTransport:
        """A sync transport for this address (a unix-socket one when ``uds`` is set)."""
        import httpx

        return httpx.HTTPTransport(uds=self.uds, **kwargs)  # type: ignore[arg-type]

    def async_transport(self, **kwargs: object) -> httpx.AsyncHTTPTransport:
        """An async transport for this address."""
        import httpx

        return httpx.AsyncHTTPTransport(uds=self.uds, **kwargs)  # type: ignore[arg-type]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_addr(addr: str | None = None) -> str:
    """The address to use: explicit, else ``$VAULT_ADDR``, else the default."""
    return (addr or os.environ.get(ADDR_ENV) or DEFAULT_ADDR).strip()


def parse_addr(addr: str | None = None, *, allow_insecure: bool = False) -> VaultAddress:
    """Parse a vault address; ``None`` means ``$VAULT_ADDR`` or the default.

    Raises :class:`VaultAddressError` for malformed addresses and for plain HTTP to a
    non-loopback host (unless ``allow_insecure``).
    """
    raw = resolve_addr(addr)
    if raw.startswith("unix:"):
        path = raw[len("unix:") :]
        if path.startswith("//"):  # unix:///run/vault.sock
            path = path[2:]
        if not path.startswith("/"):
            raise VaultAddressError(f"invalid vault address {raw!r}: unix socket path must be absolute")
        return VaultAddress(display=f"unix:{path}", base_url=UDS_BASE_URL, uds=path)

    if "://" not in raw:  # bare host:port
        raw = f"http://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise VaultAddressError(f"invalid vault address {raw!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise VaultAddressError(f"invalid vault address {raw!r}: use http(s)://host:port or unix:/path.sock")
    host = parts.hostname
    if not host:
        raise VaultAddressError(f"invalid vault address {raw!r}: missing host")
    if parts.username or parts.password:
        raise VaultAddressError("invalid vault address: credentials in the URL are not supported")
    if scheme == "http" and not allow_insecure and not is_loopback_host(host):
        raise VaultAddressError(
            f"refusing plain http to non-loopback host {host!r}: use https, "
            "or allow it explicitly (allow_insecure=True / --allow-insecure)"
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    base_url = f"{scheme}://{netloc}{parts.path.rstrip('/')}"
    return VaultAddress(display=base_url, base_url=base_url)
