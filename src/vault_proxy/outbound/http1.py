"""A lean HTTP/1.1 client for the proxy's upstream calls: a keep-alive pool, bodies streamed both ways.

Why not aiohttp's client (still used behind ``--http-proxy``): its per-request machinery (session
options, tracing, cookie jar, auto headers, a timer per read) cost ~290 k CPU instructions per
proxied call in ``bench/proxy_cost.py``, more than everything else the vault does for that call.
Parsing is llhttp's, through ``httptools``; this module keeps only what a proxy needs.

SSRF: every new connection resolves its host once (``netguard.resolve_checked``, which refuses the
host if any address is refused) and dials a checked address, with SNI and the certificate checked
against the host name, so a second DNS answer can never redirect it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

from multidict import CIMultiDict

from ..netguard import AddressPolicy
from .destination import Destination, Origin
from .dial import connect, insecure_tls
from .http1_connection import Connection, UpstreamClosed, UpstreamProtocolError, UpstreamResponse

__all__ = ["LeanUpstream", "UpstreamClosed", "UpstreamProtocolError", "UpstreamResponse"]

IDLE_REUSE = 50.0  # seconds a pooled connection may sit idle and still be reused
MAX_IDLE_PER_HOST = 64  # kept idle per origin at least; more when more calls ran at once
MAX_IDLE_CAP = 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 §9.2.2


class _Exchange:
    """``async with pool.open(...) as response``: the connection goes back to the pool only when the
    response was read to its end, the request body was sent whole and the upstream keeps it alive."""

    def __init__(self, host: _Host, request: Callable[[], Any]) -> None:
        self._host = host
        self._request = request
        self._conn: Connection | None = None
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        host = self._host
        host.busy += 1
        if host.busy > host.peak:
            host.peak = min(host.busy, MAX_IDLE_CAP)
        try:
            self._conn, self._writer, response = await self._request()
        except BaseException:
            host.busy -= 1
            raise
        return response

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn, writer = self._conn, self._writer
        if conn is None:
            return
        writer_done = writer is None or (writer.done() and not writer.cancelled() and writer.exception() is None)
        if writer is not None and not writer.done():
            writer.cancel()
        self._host.busy -= 1
        conn.detach()  # the relay is done with the response: no response <-> connection cycle is left
        if exc_type is None and writer_done and conn.complete and conn.reusable and not conn.closed:
            self._host.release(conn)
        else:
            conn.close()
        self._conn = self._writer = None


class _Host:
    """One origin and TLS mode: its idle connections, the exchanges in flight and the most seen at once.
    The idle list keeps up to that peak, so 100 steady callers do not close and redial a TLS connection
    every few requests (issue #16)."""

    __slots__ = ("idle", "busy", "peak")

    def __init__(self) -> None:
        self.idle: list[Connection] = []
        self.busy = 0
        self.peak = 0

    def take_idle(self) -> Connection | None:
        idle = self.idle
        if not idle:
            return None
        oldest_ok = asyncio.get_running_loop().time() - IDLE_REUSE
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest_ok:
                return conn
            conn.close()
        return None

    def release(self, conn: Connection) -> None:
        if len(self.idle) >= max(MAX_IDLE_PER_HOST, self.peak):
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self.idle.append(conn)


class LeanUpstream:
    """The pool: a ``_Host`` per (origin, TLS mode)."""

    def __init__(
        self,
        policy_for: Callable[[bool], AddressPolicy],
        tls: ssl.SSLContext,
        *,
        read_timeout: float,
        connect_timeout: float,
    ) -> None:
        self._policy_for = policy_for
        self._tls = tls
        self._insecure_tls = insecure_tls()
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self._hosts: dict[tuple[Origin, bool], _Host] = {}

    def open(
        self,
        method: str,
        destination: Destination,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
        homelab: bool,
    ) -> _Exchange:
        """One exchange with ``destination.origin`` (the only place dialled) for ``destination.target``."""
        origin = destination.origin
        host = self._hosts.get((origin, homelab))
        if host is None:
            host = self._hosts[(origin, homelab)] = _Host()

        async def request() -> tuple[Connection, asyncio.Task[None] | None, UpstreamResponse]:
            chunked = body is not None and "Content-Length" not in headers
            head = _request_head(method, destination, headers, chunked=chunked)
            for attempt in (1, 2):
                conn = host.take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(origin, homelab)
                conn.begin_exchange(head_request=method == "HEAD")
                assert conn.transport is not None
                conn.transport.write(head)
                writer = None
                if body is not None:
                    writer = asyncio.get_running_loop().create_task(_send_body(conn, body, chunked))
                    writer.add_done_callback(_retrieve)
                try:
                    response = await conn.wait_head()
                except UpstreamClosed:
                    conn.close()
                    # A pooled connection the upstream closed just before our request: retried once on a
                    # new connection, for an idempotent request without a body that got no answer at all.
                    if attempt == 1 and reused and writer is None and method in _IDEMPOTENT and not conn.got_data:
                        continue
                    if writer is not None:
                        writer.cancel()
                    raise
                except BaseException:
                    conn.close()
                    if writer is not None:
                        writer.cancel()
                    raise
                response.url = destination.url
                return conn, writer, response
            raise AssertionError("unreachable")

        return _Exchange(host, request)

    async def _connect(self, origin: Origin, homelab: bool) -> Connection:
        loop = asyncio.get_running_loop()
        tls = None if origin.scheme == "http" else (self._insecure_tls if homelab else self._tls)
        _transport, conn = await connect(
            lambda: Connection(loop, self.read_timeout),
            origin.host,
            origin.port,
            self._policy_for(homelab),
            tls=tls,
            timeout=self.connect_timeout,
        )
        return conn

    async def close(self) -> None:
        for host in self._hosts.values():
            for conn in host.idle:
                conn.close()
            host.idle.clear()
        self._hosts.clear()


def _retrieve(task: asyncio.Task[None]) -> None:
    """The body writer's failure is seen through the connection; mark it retrieved (no log noise)."""
    if not task.cancelled():
        task.exception()


def _request_head(method: str, destination: Destination, headers: CIMultiDict[str], *, chunked: bool) -> bytes:
    lines = [method, destination.request_line_tail]  # the tail holds two line breaks, the method none
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    if head.count("\n") != len(lines) or head.count("\r") != len(lines):
        raise UpstreamProtocolError("a request header contains a line break")
    return head.encode("utf-8", "surrogateescape")


async def _send_body(conn: Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    """Stream the caller's body upstream (chunk-encoded when its length is unknown). Any failure ends
    the connection: the upstream must not take a truncated body for a complete one."""
    transport = conn.transport
    if transport is None:
        raise UpstreamClosed("connection closed by the upstream before the request body was sent")
    try:
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            await conn.drain()
        if chunked:
            transport.write(b"0\r\n\r\n")
    except BaseException:
        conn.close()
        raise
