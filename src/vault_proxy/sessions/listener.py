"""One-shot loopback listeners, the splice behind them, and the count of open sessions.

``OneShot`` first binds ``127.0.0.1:0`` without listening (so running out of file descriptors shows
before any upstream login), then, given the logged-in upstream connection, listens and accepts exactly
one client (the listener closes at once; later connects are refused). The client must finish the
protocol's local login within ``LOGIN_TIMEOUT``; then bytes flow both ways until both sides are done,
each side's end of stream passed on (half-close). Client bytes go through the driver's client filter
(Redis command filter, Postgres statement check), upstream bytes through its reply filter (the stored
password masked). Unused, a session closes everything at its deadline. ``TcpSessions`` tracks the open
sessions, caps them per token and in all, and ends them all on lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..audit import AuditLog
from .errors import ClientRejected
from .steps import ClientFilter, ReplyFilter, Step

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# The protocol's local side: talks to the client until it is "logged in"; returns bytes to send upstream.
LocalHandshake = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Stream], Awaitable[bytes]]
CHUNK = 64 * 1024
LOGIN_TIMEOUT = 30.0


@dataclass
class Driver:
    """A protocol's local side for one session."""

    handshake: LocalHandshake | None = None
    greeting: bytes = b""  # sent to the client as soon as it connects (before the client filter's login)
    client_filter: ClientFilter | None = None
    reply_filter: ReplyFilter | None = None


class OneShot:
    def __init__(self, proto: str, service: str, timeout: float, audit: AuditLog) -> None:
        self.proto, self.service = proto, service
        self._timeout = timeout
        self._audit = audit
        self._sock: socket.socket | None = None
        self._upstream: Stream | None = None
        self._driver = Driver()
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._accepted = False
        self._counts = [0, 0]  # to upstream, to client
        self.addr = ""
        self.expires_at = 0.0
        self.closed = asyncio.Event()

    def bind(self) -> str:
        """Reserve the loopback port (not listening yet); raises OSError (EMFILE when out of descriptors)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.addr = f"127.0.0.1:{sock.getsockname()[1]}"
        return self.addr

    async def start(self, upstream: Stream, driver: Driver) -> None:
        """Listen for the one client; from here on the session owns ``upstream``."""
        assert self._sock is not None, "bind() first"
        self._upstream, self._driver = upstream, driver
        self._server = await asyncio.start_server(self._on_client, sock=self._sock)
        self.expires_at = time.time() + self._timeout
        self._deadline = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _expire(self) -> None:
        if not self._accepted:
            self._audit.record(f"{self.proto}.session", service=self.service, outcome="expired unused")
            self.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._accepted or self._server is None or self._upstream is None:
            writer.close()  # exactly one client per session
            return
        self._accepted = True
        self._server.close()
        if self._deadline is not None:
            self._deadline.cancel()
        self._task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        started = time.monotonic()
        outcome = "closed"
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                await self._login(reader, writer)
            await self._splice(reader, writer)
        except ClientRejected as exc:
            outcome = f"refused: {exc.reason}"
        except TimeoutError:
            outcome = "refused: no login within 30 s"
        except asyncio.CancelledError:
            outcome = "ended by lock"
        except Exception as exc:  # noqa: BLE001 - a broken client or upstream ends the session
            outcome = f"error: {type(exc).__name__}"
        finally:
            for stream_writer in (writer, self._upstream[1]):
                stream_writer.close()
            masked = self._driver.reply_filter.hits if self._driver.reply_filter is not None else 0
            self._audit.record(
                f"{self.proto}.session", service=self.service, peer=f"{peer[0]}:{peer[1]}" if peer else None,
                duration_ms=int((time.monotonic() - started) * 1000), bytes_to_upstream=self._counts[0],
                bytes_to_client=self._counts[1], outcome=outcome, **({"masked": masked} if masked else {}),
            )  # fmt: skip
            self.closed.set()

    async def _login(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The protocol's local login: its handshake, then (Redis) the filter until it says logged in."""
        assert self._upstream is not None
        driver = self._driver
        if driver.greeting:
            await self._apply(Step(to_client=driver.greeting), writer)
        pending = await driver.handshake(reader, writer, self._upstream) if driver.handshake else b""
        if pending:
            await self._apply(driver.client_filter.feed(pending) if driver.client_filter else Step(pending), writer)
        while driver.client_filter is not None and not driver.client_filter.logged_in:
            if getattr(driver.client_filter, "wants_upstream", False):  # Postgres: the startup's set_config answer
                answer = await self._upstream[0].read(CHUNK)
                await self._apply(driver.client_filter.feed_upstream(answer), writer)  # type: ignore[attr-defined]
                continue
            chunk = await reader.read(CHUNK)
            if not chunk:
                raise ClientRejected("closed before logging in")
            await self._apply(driver.client_filter.feed(chunk), writer)

    async def _apply(self, step: Step, writer: asyncio.StreamWriter) -> None:
        assert self._upstream is not None
        if step.to_client:
            writer.write(step.to_client)
            self._counts[1] += len(step.to_client)
        if step.to_upstream:
            self._upstream[1].write(step.to_upstream)
            self._counts[0] += len(step.to_upstream)
            await self._upstream[1].drain()
        if step.close is not None:
            with contextlib.suppress(OSError):
                await writer.drain()
            raise ClientRejected(step.close)
        if step.to_client:
            await writer.drain()

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks = [
            asyncio.ensure_future(self._from_client(reader, writer)),
            asyncio.ensure_future(self._to_client(writer)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()

    async def _from_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._upstream is not None
        client_filter = self._driver.client_filter
        while chunk := await reader.read(CHUNK):
            await self._apply(client_filter.feed(chunk) if client_filter else Step(chunk), writer)
        _write_eof(self._upstream[1])

    async def _to_client(self, writer: asyncio.StreamWriter) -> None:
        assert self._upstream is not None
        mask = self._driver.reply_filter
        while chunk := await self._upstream[0].read(CHUNK):
            out = mask.feed(chunk) if mask is not None else chunk
            if out:
                self._counts[1] += len(out)
                writer.write(out)
                await writer.drain()
        if mask is not None and (tail := mask.flush()):
            self._counts[1] += len(tail)
            writer.write(tail)
        _write_eof(writer)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        if self._deadline is not None:
            self._deadline.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif not self._accepted:
            if self._upstream is not None:
                self._upstream[1].close()
            self.closed.set()


def _write_eof(sink: asyncio.StreamWriter) -> None:
    """Pass the end of stream on (half-close) so the other direction can finish."""
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()


class SessionLimit(Exception):
    """Too many open sessions (429)."""


class SessionsClosed(Exception):
    """The vault was locked while the session was being opened."""


class Slot:
    """One counted session (from before its upstream login until it closes); ``release`` is idempotent."""

    def __init__(self, sessions: TcpSessions, owner: bytes) -> None:
        self._sessions, self.owner = sessions, owner
        self.generation = sessions.generation
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._sessions._release(self.owner)


class TcpSessions:
    """Every open session, with what it is bound to: its token (digest and expiry) and its service.

    A session ends with its token (revoked, expired) and with its service (updated, deleted), not only
    with the lock: a revoked agent must not keep a logged-in database connection.
    """

    def __init__(self) -> None:
        self._live: dict[OneShot, tuple[Slot, asyncio.TimerHandle | None]] = {}
        self._per_owner: Counter[bytes] = Counter()
        self._open = 0
        self.generation = 0  # bumped by close(): a session opened across a lock is not kept

    def reserve(self, owner: bytes, per_owner: int, total: int) -> Slot:
        """Count a new session for ``owner`` (a token's digest); SessionLimit when a cap is reached."""
        if self._per_owner[owner] >= per_owner:
            raise SessionLimit(f"too many open sessions for this token (at most {per_owner}): use or close one first")
        if self._open >= total:
            raise SessionLimit(f"too many open sessions on this server (at most {total}): try again later")
        self._per_owner[owner] += 1
        self._open += 1
        return Slot(self, owner)

    def _release(self, owner: bytes) -> None:
        self._open -= 1
        self._per_owner[owner] -= 1
        if self._per_owner[owner] <= 0:
            del self._per_owner[owner]

    def track(self, session: OneShot, slot: Slot, token_expires_at: float | None = None) -> None:
        """Keep ``session`` until it closes (then its slot is freed), at most until its token expires;
        SessionsClosed after a lock."""
        if slot.generation != self.generation:
            raise SessionsClosed("vault is locked")
        timer = None
        if token_expires_at is not None:
            timer = asyncio.get_running_loop().call_later(max(0.0, token_expires_at - time.time()), session.close)
        self._live[session] = (slot, timer)
        asyncio.ensure_future(self._forget_when_closed(session, slot))

    async def _forget_when_closed(self, session: OneShot, slot: Slot) -> None:
        await session.closed.wait()
        entry = self._live.pop(session, None)
        if entry is not None and entry[1] is not None:
            entry[1].cancel()
        slot.release()

    def close_owner(self, owner: bytes) -> int:
        """The token was revoked: end its sessions, pending and active. Returns how many."""
        doomed = [session for session, (slot, _) in self._live.items() if slot.owner == owner]
        for session in doomed:
            session.close()
        return len(doomed)

    def close_service(self, name: str) -> int:
        """The service was updated or deleted: sessions logged in with what it held end now."""
        doomed = [session for session in self._live if session.service == name]
        for session in doomed:
            session.close()
        return len(doomed)

    async def close(self) -> None:
        """On lock: pending listeners and active sessions alike."""
        self.generation += 1
        sessions = list(self._live)
        for session in sessions:
            session.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(s.closed.wait() for s in sessions)), 5)
        for _, timer in self._live.values():
            if timer is not None:
                timer.cancel()
        self._live.clear()
