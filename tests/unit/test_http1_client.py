"""The lean upstream client (outbound/http1.py) against scripted HTTP peers on 127.0.0.1.

Each peer is a real asyncio TCP server that reads the request and answers with bytes the test
chooses, so framing, reuse and the limits are checked on the wire, not against a mock.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable

import pytest
from multidict import CIMultiDict

from vault_proxy.netguard import AddressNotAllowed, AddressPolicy
from vault_proxy.outbound import http1_connection
from vault_proxy.outbound.clients import tls_context
from vault_proxy.outbound.destination import Destination, Origin
from vault_proxy.outbound.http1 import LeanUpstream, UpstreamClosed, UpstreamProtocolError
from vault_proxy.outbound.http1_connection import UpstreamReadTimeout

LOOPBACK = AddressPolicy(allow_private=(ipaddress.ip_network("127.0.0.0/8"),))
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Peer:
    """Answers each request with ``script(reader, writer, n)``; records heads and connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.connections = 0
        self.bodies: list[bytes] = []

    async def __aenter__(self) -> Peer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.heads.append(head)
                await self.script(reader, writer, len(self.heads))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/x") -> Destination:
        return Destination(Origin("http", "127.0.0.1", self.port), path)  # as the proxy builds them


def pool(read_timeout: float = 5.0) -> LeanUpstream:
    return LeanUpstream(lambda homelab: LOOPBACK, tls_context(None), read_timeout=read_timeout, connect_timeout=5.0)


async def fetch(client: LeanUpstream, url: Destination, method: str = "GET", body=None, headers=None) -> tuple[int, bytes]:
    async with client.open(method, url, CIMultiDict(headers or {}), body, True) as response:
        return response.status, await response.read()


def answer(body: bytes, extra: bytes = b"") -> Script:
    async def script(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body)
        await writer.drain()

    return script


async def test_keep_alive_reuses_one_connection_and_sends_host_and_target() -> None:
    async with Peer(answer(b"hello")) as peer:
        client = pool()
        for _ in range(3):
            assert await fetch(client, peer.url("/a%2Fb?q=1%3F&x"), headers={"X-One": "1"}) == (200, b"hello")
        await client.close()
    assert peer.connections == 1
    first = peer.heads[0].decode()
    assert first.startswith("GET /a%2Fb?q=1%3F&x HTTP/1.1\r\n")  # the caller's encoding, untouched
    assert f"Host: 127.0.0.1:{peer.port}\r\n" in first and "X-One: 1\r\n" in first


async def test_informational_answers_are_skipped() -> None:
    async def script(reader, writer, n):
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )

    async with Peer(script) as peer:
        assert await fetch(pool(), peer.url()) == (201, b"ok")


async def test_body_until_eof_and_connection_not_reused() -> None:
    async def script(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with Peer(script) as peer:
        client = pool()
        assert await fetch(client, peer.url()) == (200, b"all of it")
        assert await fetch(client, peer.url()) == (200, b"all of it")
    assert peer.connections == 2


async def test_head_response_is_complete_at_its_headers() -> None:
    async def script(reader, writer, n):  # HEAD: the Content-Length a GET would have, and no body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")

    async with Peer(script) as peer:
        client = pool()
        for _ in range(2):
            async with client.open("HEAD", peer.url(), CIMultiDict(), None, True) as response:
                assert response.status == 200 and response.content_length == 1000
                assert await response.read() == b""
    assert peer.connections == 2  # never reused after a HEAD: the parser cannot be told there was no body


async def test_chunked_request_body_and_fixed_length_body() -> None:
    async def script(reader, writer, n):
        head = peer.heads[-1]
        if b"Transfer-Encoding: chunked" in head:
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                data += await reader.read(65536)
        else:
            data = await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        peer.bodies.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async def parts():
        yield b"abc"
        yield b""
        yield b"defgh"

    async with Peer(script) as peer:
        client = pool()
        assert await fetch(client, peer.url(), "POST", parts()) == (200, b"")
        assert await fetch(client, peer.url(), "PUT", parts(), headers={"Content-Length": "8"}) == (200, b"")
    assert peer.bodies == [b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n", b"abcdefgh"]


async def _drops_the_second_request(reader, writer, n):
    """Answers with the request's number, except the 2nd: the connection closes without an answer,
    as a server does when its keep-alive timeout strikes just as the request arrives."""
    if n == 2:
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n)
    await writer.drain()


async def test_stale_pooled_connection_is_retried_once_for_an_idempotent_request() -> None:
    async with Peer(_drops_the_second_request) as peer:
        client = pool()
        assert await fetch(client, peer.url()) == (200, b"1")
        assert await fetch(client, peer.url()) == (200, b"3")  # request 2 died with its connection
    assert peer.connections == 2


async def test_stale_pooled_connection_is_not_retried_for_a_post() -> None:
    """The upstream may have acted on a POST before closing: it is never sent twice."""
    async with Peer(_drops_the_second_request) as peer:
        client = pool()
        assert await fetch(client, peer.url()) == (200, b"1")
        with pytest.raises(UpstreamClosed):
            await fetch(client, peer.url(), "POST")
    assert len(peer.heads) == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n", "response headers over 64 KiB"),
        (b"HTTP/1.1 200 " + b"b" * (70 * 1024), "status line over 64 KiB"),
        (b"HTTP/1.1 103 Hints\r\n\r\n" * 9 + b"HTTP/1.1 200 OK\r\n\r\n", "more than 8 informational"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "."),
        (b"NOT HTTP AT ALL\r\n\r\n", "."),
    ],
    ids=["huge header", "endless status line", "1xx flood", "length and chunked", "garbage"],
)
async def test_bad_answers_are_protocol_errors(reply: bytes, message: str) -> None:
    async def script(reader, writer, n):
        writer.write(reply)

    async with Peer(script) as peer:
        with pytest.raises(UpstreamProtocolError, match=message):
            await fetch(pool(), peer.url())


async def test_closed_before_headers_and_read_timeout() -> None:
    async def closes(reader, writer, n):
        writer.close()

    async with Peer(closes) as peer:
        with pytest.raises(UpstreamClosed):
            await fetch(pool(), peer.url())

    async def stalls(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(5)

    async with Peer(stalls) as peer:
        with pytest.raises(UpstreamReadTimeout):
            await fetch(pool(read_timeout=0.3), peer.url())


async def test_slow_reader_pauses_the_socket(monkeypatch) -> None:
    monkeypatch.setattr(http1_connection, "HIGH_WATER", 64 * 1024)
    monkeypatch.setattr(http1_connection, "LOW_WATER", 16 * 1024)
    size = 4 * 1024 * 1024

    async def script(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size)
        await writer.drain()

    async with Peer(script) as peer, pool().open("GET", peer.url(), CIMultiDict(), None, True) as response:
        got, most_buffered = 0, 0
        async for chunk in response.content.iter_any():
            got += len(chunk)
            most_buffered = max(most_buffered, response._conn._buffered)
            await asyncio.sleep(0)
    assert got == size
    assert most_buffered < 64 * 1024 + 512 * 1024, most_buffered  # paused near the mark, not the whole body


async def test_line_break_in_a_header_value_is_refused_before_sending() -> None:
    async with Peer(answer(b"x")) as peer:
        with pytest.raises(UpstreamProtocolError, match="line break"):
            await fetch(pool(), peer.url(), headers={"X-Evil": "a\r\nX-Injected: 1"})
    assert peer.heads == []


async def test_refused_address_never_dials() -> None:
    client = LeanUpstream(lambda homelab: AddressPolicy(), tls_context(None), read_timeout=5, connect_timeout=5)
    with pytest.raises(AddressNotAllowed):
        await fetch(client, Destination(Origin("http", "127.0.0.1", 9), "/x"))


async def test_a_closed_connection_is_freed_without_the_cycle_collector(monkeypatch) -> None:
    """Reference cycles kept closed connections (and their TLS buffers) alive until a full GC (#16)."""
    import gc
    import weakref

    made: list[weakref.ref] = []
    original = http1_connection.Connection.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(http1_connection.Connection, "__init__", recording_init)

    async def script(reader, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    gc.disable()
    try:
        async with Peer(script) as peer:
            client = pool()
            for _ in range(3):
                assert await fetch(client, peer.url()) == (200, b"ok")
            for _ in range(20):  # connection_lost runs on a later loop turn
                await asyncio.sleep(0.01)
        assert len(made) == 3
        assert [ref for ref in made if ref() is not None] == []
    finally:
        gc.enable()


async def test_the_idle_pool_keeps_as_many_connections_as_ran_at_once() -> None:
    """100 concurrent callers with a pool capped at 64 idle closed and redialled every few calls (#16)."""
    async def script(reader, writer, n):
        await asyncio.sleep(0.05)  # keeps the exchanges overlapping
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with Peer(script) as peer:
        client = pool()
        for _ in range(3):
            results = await asyncio.gather(*(fetch(client, peer.url()) for _ in range(100)))
            assert results == [(200, b"ok")] * 100
        assert peer.connections == 100  # the first round dialled them; later rounds reused every one
