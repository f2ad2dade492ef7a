"""One upstream HTTP/1.1 connection: an asyncio protocol around llhttp (httptools), one exchange at a time.

It parses the response, hands the body on as it arrives (pausing the socket when the caller reads
slower than the upstream sends), bounds what an upstream can make it buffer, and times reads out
from the last byte received. The pool around it is outbound/http1.py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

MAX_HEAD = 64 * 1024  # status line and headers of one response
MAX_BEFORE_HEAD = 1024 * 1024  # bytes received before the headers end (bounds what the parser buffers)
MAX_INFORMATIONAL = 8  # 1xx answers tolerated before the real one
HIGH_WATER = 1024 * 1024  # stop reading from the upstream when this much body waits for the caller
LOW_WATER = 256 * 1024


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection before its response was complete."""


class UpstreamProtocolError(Exception):
    """The upstream's answer is not HTTP/1.1 we accept (malformed, headers too large, an upgrade)."""


class UpstreamReadTimeout(asyncio.TimeoutError):
    """No response headers, or no next body chunk, within the read timeout."""


class Connection(asyncio.Protocol):
    """One upstream connection; it carries one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._paused_writing = False
        self._drain: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.begin_exchange(head_request=False)

    def begin_exchange(self, *, head_request: bool) -> None:
        self.head_request = head_request
        self._last = self._loop.time()
        self.response: UpstreamResponse | None = None
        self.complete = False
        self.reusable = True
        self.got_data = False
        self.error: BaseException | None = None
        self._informational = False
        self._informational_seen = 0
        self._before_head = 0
        self._raw_headers: list[tuple[str, str]] = []
        self._reason = b""
        self._head_size = 0
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return
        self._last = self._loop.time()
        self.got_data = True
        if self.complete or self.error is not None:  # nothing is waiting for bytes: unsolicited
            self._abort(UpstreamProtocolError("data after the response"))
            return
        if self.response is None:
            self._before_head += len(data)
            if self._before_head > MAX_BEFORE_HEAD:
                self._abort(UpstreamProtocolError(f"no end of the response headers in {MAX_BEFORE_HEAD // 1024} KiB"))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._abort(UpstreamProtocolError("the upstream switched protocols"))
        except Exception as exc:  # noqa: BLE001 - parser errors and our own limits alike
            ours = exc.__cause__ or exc.__context__  # a limit raised in a callback comes back wrapped
            self._abort(ours if isinstance(ours, UpstreamProtocolError) else UpstreamProtocolError(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.response is not None and not self.complete and self.error is None and self._until_eof() and exc is None:
            self.complete = True  # a body delimited by the end of the connection
            self.reusable = False
            self._wake()
        elif not self.complete and self.error is None:
            self._fail(UpstreamClosed(f"connection closed by the upstream{f': {exc}' if exc else ''}"))
        # Break the reference cycles (parser -> its callbacks' owner, transport -> protocol) so a closed
        # connection and its TLS buffers are freed at once, not at the next full GC (issue #16).
        self._parser = None  # type: ignore[assignment]
        self.transport = None

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self._reason += status
        self._head_size += len(status)
        if self._head_size > MAX_HEAD:
            raise UpstreamProtocolError(f"response status line over {MAX_HEAD // 1024} KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            return  # trailers: not forwarded
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise UpstreamProtocolError(f"response headers over {MAX_HEAD // 1024} KiB")
        self._raw_headers.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints, a stray 100): wait for the real one
            self._informational_seen += 1
            if self._informational_seen > MAX_INFORMATIONAL:
                raise UpstreamProtocolError(f"more than {MAX_INFORMATIONAL} informational responses")
            self._informational = True
            self._raw_headers, self._reason, self._head_size = [], b"", 0
            return
        self.response = UpstreamResponse(
            status, self._reason.decode("latin-1"), CIMultiDictProxy(CIMultiDict(self._raw_headers)), self
        )
        self.reusable = self._parser.should_keep_alive()
        if self.head_request:  # llhttp cannot be told; the connection is not reused after a HEAD
            self.complete, self.reusable = True, False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_request:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self._wake()

    # -- state --------------------------------------------------------------------------------
    def _until_eof(self) -> bool:
        headers = self.response.headers if self.response is not None else {}
        return "Content-Length" not in headers and "chunked" not in headers.get("Transfer-Encoding", "").lower()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _abort(self, exc: BaseException) -> None:
        self._fail(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def detach(self) -> None:
        """The exchange is over and the connection closed: drop the response <-> connection cycle."""
        self.response = None
        self._body.clear()

    async def _wait(self) -> None:
        """Until the parser has news for the reader; a read timeout counts from the last byte received."""
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        self._timer = self._loop.call_at(self._last + self.read_timeout, self._check_timeout)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _check_timeout(self) -> None:
        due = self._last + self.read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        self._timer = None
        self._abort(UpstreamReadTimeout(f"no data from the upstream for {self.read_timeout:g} s"))

    async def wait_head(self) -> UpstreamResponse:
        while self.response is None:
            await self._wait()
        return self.response

    async def next_chunk(self) -> bytes | None:
        """The next body piece as it arrived, or None at the end of the body."""
        while not self._body:
            if self.complete:
                return None
            await self._wait()
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered < LOW_WATER and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def drain(self) -> None:
        if self._paused_writing and not self.closed:
            self._drain = self._loop.create_future()
            await self._drain
        if self.closed:
            raise UpstreamClosed("connection closed by the upstream while sending the request body")


class UpstreamResponse:
    """What ``proxy/forward.py`` reads from an upstream answer (the subset of aiohttp's it uses)."""

    __slots__ = ("status", "reason", "headers", "url", "_conn")

    def __init__(self, status: int, reason: str, headers: CIMultiDictProxy[str], conn: Connection) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.url: URL = URL()
        self._conn = conn

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdecimal() and value.isascii() else None

    @property
    def content(self) -> UpstreamResponse:
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_any()])
