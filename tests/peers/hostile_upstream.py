"""A hostile HTTPS upstream for the containment tests: it puts the credential it was sent where a
well-behaved proxy might not look (raw asyncio, so it can write any response bytes).

It reads the request head, takes the value of ``Authorization: Bearer <secret>`` (or, for
``/cookie-echo``, the ``Cookie`` header) and answers according to the path:

``/reason``          ``HTTP/1.1 200 <secret>``
``/header-name``     a header named ``X-<secret>``
``/coding-value``    ``Content-Encoding: <secret>``
``/double-coding``   ``Content-Encoding: identity`` then ``Content-Encoding: gzip``, body gzip(secret)
``/stacked-coding``  ``Content-Encoding: gzip, br``: body brotli(gzip(secret)), split in small chunks
``/te-gzip``         ``Transfer-Encoding: gzip, chunked``: body chunked(gzip(secret))
``/unknown-coding``  ``Content-Encoding: zstd`` (a coding the vault cannot decode)
``/set-cookie``      ``Set-Cookie: sid=<value of ?v=>``
``/cookie-echo``     the ``Cookie`` request header, echoed in the body and in a header
``/br-bomb``         ``Content-Encoding: br`` with a small Content-Length that expands to 128 MiB
``/status-NNN``      a response with status NNN (e.g. 0, 99, 600, 999)
``/escape-redirect`` 307 to ``<base>/../../services/x`` (a Location that only looks inside the base)
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
from typing import Self
from urllib.parse import parse_qs, urlsplit

import brotli
import trustme


class HostileUpstream:
    host = "127.0.0.1"

    def __init__(self, tls_ca: trustme.CA) -> None:
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile upstream", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, 0, ssl=self._tls), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                target = request_line.split(" ")[1]
                writer.write(_answer(target, headers))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


BOMB_SIZE = 128 * 1024 * 1024
_BOMB: list[bytes] = []


def _bomb() -> bytes:
    if not _BOMB:
        _BOMB.append(brotli.compress(b"\0" * BOMB_SIZE, quality=1))
    return _BOMB[0]


def _answer(target: str, headers: dict[str, str]) -> bytes:
    parts = urlsplit(target)
    path = parts.path.rsplit("/", 1)[-1]
    secret = headers.get("authorization", "").removeprefix("Bearer ").encode("latin-1")
    body = b"the key is " + secret
    if path == "reason":
        return b"HTTP/1.1 200 " + secret + b"\r\nContent-Length: 2\r\n\r\nok"
    if path == "header-name":
        return b"HTTP/1.1 200 OK\r\nX-" + secret + b": 1\r\nContent-Length: 2\r\n\r\nok"
    if path == "coding-value":
        return b"HTTP/1.1 200 OK\r\nContent-Encoding: " + secret + b"\r\nContent-Length: 2\r\n\r\nok"
    if path == "double-coding":
        data = gzip.compress(body)
        return _fixed(b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", data)
    if path == "stacked-coding":
        data = brotli.compress(gzip.compress(body))  # gzip applied first, as listed
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i : i + 5]), data[i : i + 5]) for i in range(0, len(data), 5))
        return b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, br\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    if path == "te-gzip":
        data = gzip.compress(body)
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        )
    if path == "unknown-coding":
        return _fixed(b"Content-Encoding: zstd\r\n", body)
    if path == "set-cookie":
        value = parse_qs(parts.query).get("v", ["x"])[0].encode()
        return _fixed(b"Set-Cookie: sid=" + value + b"; Path=/; Secure\r\n", b"set")
    if path == "cookie-echo":
        cookie = headers.get("cookie", "").encode("latin-1")
        return _fixed(b"X-Seen-Cookie: " + cookie + b"\r\n", b"you sent: " + cookie)
    if path.startswith("status-"):
        return b"HTTP/1.1 " + path.removeprefix("status-").encode() + b" X\r\nContent-Length: 2\r\n\r\nok"
    if path == "br-bomb":
        return _fixed(b"Content-Encoding: br\r\n", _bomb())
    if path == "escape-redirect":
        location = headers.get("x-base", "").encode() + b"/../../services/x"
        return b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    return _fixed(b"", b"ok")


def _fixed(extra_headers: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + extra_headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
