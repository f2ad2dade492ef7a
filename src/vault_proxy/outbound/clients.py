"""The outbound HTTP clients: one pooled aiohttp session per TLS mode, guarded by the SSRF policy."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ..netguard import AddressPolicy, GuardedResolver, guarded_socket_factory, resolve_checked
from .destination import Destination, DestinationRefused, Origin
from .dial import verified_tls
from .http1 import LeanUpstream

CONNECT_TIMEOUT = 10.0
# Waiting for response headers and idle time between body chunks: long LLM generations must work.
READ_TIMEOUT = 300.0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system trust store, plus ``--ca-file`` when given; hostname checks always on."""
    return verified_tls(str(ca_file) if ca_file is not None else None)


class UpstreamClients:
    """Sessions are created lazily (they need the running loop) and reused for every call.

    The strict session verifies certificates and refuses non-global addresses outside
    ``--allow-private``; the homelab one (services with ``tls_skip_verify``) skips certificate checks
    and allows private ranges but still never link-local or metadata addresses.
    With ``--http-proxy`` the proxy is dialled instead, so the target is checked before each call.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        ca_file: Path | None = None,
        http_proxy: str | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.policy = policy
        self.read_timeout = read_timeout
        self.http_proxy = http_proxy
        self.tls = tls_context(ca_file)
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self.lean = LeanUpstream(self.policy_for, self.tls, read_timeout=read_timeout, connect_timeout=CONNECT_TIMEOUT)

    def open(
        self,
        method: str,
        destination: Destination,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
        homelab: bool,
    ) -> AbstractAsyncContextManager[Any]:
        """One upstream exchange with ``destination.origin``: ``async with clients.open(...) as response``.

        Direct calls use the lean HTTP/1.1 pool (outbound/http1.py); behind ``--http-proxy``, aiohttp's
        client, which speaks to the proxy (the caller runs :meth:`precheck` on the origin first).
        """
        if self.http_proxy:
            url = destination.url
            if Origin.of(url) != destination.origin:  # the URL aiohttp gets must name the same origin
                raise DestinationRefused("upstream URL does not match the service's origin")
            return self.session(homelab).request(method, url, headers=headers, data=body, allow_redirects=False)
        return self.lean.open(method, destination, headers, body, homelab)

    def session(self, homelab: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(homelab)
        if session is None or session.closed:
            session = self._sessions[homelab] = self._new_session(homelab)
        return session

    def policy_for(self, homelab: bool) -> AddressPolicy:
        return self.policy.with_homelab() if homelab else self.policy

    async def precheck(self, host: str, port: int, homelab: bool) -> None:
        """With an outbound proxy our resolver never sees the target: check it here (raises AddressNotAllowed)."""
        if self.http_proxy:
            await resolve_checked(host, port, self.policy_for(homelab))

    def _new_session(self, homelab: bool) -> aiohttp.ClientSession:
        policy = self.policy_for(homelab)
        if self.http_proxy:
            connector = aiohttp.TCPConnector(limit=0, ssl=False if homelab else self.tls)
        else:
            connector = aiohttp.TCPConnector(
                limit=0,
                ssl=False if homelab else self.tls,
                resolver=GuardedResolver(policy),
                socket_factory=guarded_socket_factory(policy),
            )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=self.read_timeout
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            proxy=self.http_proxy,
        )

    async def close(self) -> None:
        await self.lean.close()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
