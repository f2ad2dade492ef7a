"""A misbehaving HTTPS upstream on 127.0.0.1 for fault tests: raw asyncio, so it can break HTTP on purpose.

The request path picks the fault (the request itself is read up to its blank line first):

``/close``         closes the connection before any response byte.
``/garbage``       answers with bytes that are not HTTP.
``/bad-status``    a status line with a non-numeric code.
``/huge-headers``  a 200 whose one header line is 1 MiB long.
``/stall-headers`` never answers (until the test stops the peer).
``/stall-body``    headers announcing 1000 bytes, 10 of them, then nothing.
``/stall-stream``  an event stream (relayed as it comes): one event, then nothing.
``/ok``            a normal small 200 (the control case).

``tls_ca`` issues its certificate; with ``self_signed=True`` a certificate from an unrelated CA is used
instead, which a vault trusting only ``tls_ca`` must refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Self

import trustme


class FaultyUpstream:
    host = "127.0.0.1"

    def __init__(self, tls_ca: trustme.CA, *, self_signed: bool = False) -> None:
        issuer = trustme.CA() if self_signed else tls_ca
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert("127.0.0.1", "localhost").configure_cert(self._tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty upstream", daemon=True)
        self._server: asyncio.Server | None = None
        self._stalled: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            for writer in self._stalled:
                writer.close()
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        path = head.split(b" ", 2)[1].split(b"?")[0] if head.count(b" ") >= 2 else b""
        if path.endswith(b"/close"):
            writer.close()
        elif path.endswith(b"/garbage"):
            writer.write(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
            await writer.drain()
            writer.close()
        elif path.endswith(b"/bad-status"):
            writer.write(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
        elif path.endswith(b"/huge-headers"):
            writer.write(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * (1024 * 1024) + b"\r\nContent-Length: 0\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
        elif path.endswith(b"/stall-headers"):
            self._stalled.append(writer)
        elif path.endswith(b"/stall-stream"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b'10\r\ndata: {"i": 0}\n\n\r\n')
            await writer.drain()
            self._stalled.append(writer)
        elif path.endswith(b"/stall-body"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n")
            writer.write(b"0123456789")
            await writer.drain()
            self._stalled.append(writer)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()
