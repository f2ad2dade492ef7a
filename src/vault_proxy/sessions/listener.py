"""One-shot loopback listeners and the byte splice behind them.

``OneShot`` owns an already-authenticated upstream connection. It listens on ``127.0.0.1:0``,
accepts exactly one client (the listener closes at once, later connects are refused), runs the
protocol's local handshake (which may return bytes the client pipelined, to go upstream first), then
copies bytes both ways until both sides are done, passing each side's end of stream on (half-close).
Unused, it closes everything at its deadline. ``TcpSessions`` tracks them so lock ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from ..audit import AuditLog
from .dial import Stream

# The protocol's local side: talks to the client until it is "logged in"; returns bytes to send upstream.
LocalHandshake = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Stream], Awaitable[bytes]]
CHUNK = 64 * 1024


class OneShot:
    def __init__(
        self, proto: str, service: str, upstream: Stream, handshake: LocalHandshake, timeout: float, audit: AuditLog
    ) -> None:
        self.proto, self.service = proto, service
        self._upstream = upstream
        self._handshake = handshake
        self._timeout = timeout
        self._audit = audit
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._accepted = False
        self.addr = ""
        self.expires_at = 0.0
        self.closed = asyncio.Event()

    async def open(self) -> str:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.addr = f"127.0.0.1:{port}"
        self.expires_at = time.time() + self._timeout
        self._deadline = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        return self.addr

    def _expire(self) -> None:
        if not self._accepted:
            self._audit.record(f"{self.proto}.session", service=self.service, outcome="expired unused")
            self.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._accepted or self._server is None:
            writer.close()  # exactly one client per session
            return
        self._accepted = True
        self._server.close()
        if self._deadline is not None:
            self._deadline.cancel()
        self._task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        started = time.monotonic()
        counts = [0, 0]  # to upstream, to client
        outcome = "closed"
        try:
            pending = await self._handshake(reader, writer, self._upstream)
            up_reader, up_writer = self._upstream
            if pending:
                up_writer.write(pending)
                counts[0] += len(pending)
            await asyncio.gather(_pump(reader, up_writer, counts, 0), _pump(up_reader, writer, counts, 1))
        except asyncio.CancelledError:
            outcome = "ended by lock"
        except Exception as exc:  # noqa: BLE001 - a broken client or upstream ends the session
            outcome = f"error: {type(exc).__name__}"
        finally:
            for stream_writer in (writer, self._upstream[1]):
                stream_writer.close()
            self._audit.record(
                f"{self.proto}.session", service=self.service, peer=f"{peer[0]}:{peer[1]}" if peer else None,
                duration_ms=int((time.monotonic() - started) * 1000), bytes_to_upstream=counts[0],
                bytes_to_client=counts[1], outcome=outcome,
            )  # fmt: skip
            self.closed.set()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._deadline is not None:
            self._deadline.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif not self._accepted:
            self._upstream[1].close()
            self.closed.set()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, counts: list[int], index: int) -> None:
    """Copy until end of stream, then pass the end on (half-close) so the other direction can finish."""
    while chunk := await source.read(CHUNK):
        counts[index] += len(chunk)
        sink.write(chunk)
        await sink.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()


class TcpSessions:
    def __init__(self) -> None:
        self._live: set[OneShot] = set()

    def track(self, session: OneShot) -> None:
        self._live.add(session)
        asyncio.ensure_future(self._forget_when_closed(session))

    async def _forget_when_closed(self, session: OneShot) -> None:
        await session.closed.wait()
        self._live.discard(session)

    async def close(self) -> None:
        """On lock: pending listeners and active sessions alike."""
        sessions = list(self._live)
        for session in sessions:
            session.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(s.closed.wait() for s in sessions)), 5)
        self._live.clear()
