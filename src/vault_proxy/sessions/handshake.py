"""The upstream login of a TCP session as a sans-I/O state machine, and the one runner that drives it.

A protocol's login (SMTP EHLO/AUTH, IMAP LOGIN, the Postgres startup) is a class fed the server's
bytes that answers with an :class:`Action`: bytes to send, whether to upgrade the connection to TLS
now, whether the login is done, or why it failed (the message names the step and never the stored
password). The class never touches a socket and never raises for anything the server sends, so unit
tests drive it with scripted bytes split any way. :func:`run_upstream` is the only I/O: it writes,
reads, upgrades TLS through ``dial.secure``, runs ``work`` in a thread and turns a failure into a
:class:`SessionError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .dial import Stream, secure
from .errors import SessionError

CHUNK = 64 * 1024
MAX_REPLY = 64 * 1024  # a login reply (all its lines) longer than this is hostile


@dataclass
class Action:
    send: bytes = b""  # to the upstream, first
    tls: bool = False  # then upgrade the connection and call ``tls_started``
    done: bool = False  # the login succeeded; bytes after the last reply are in ``trailing``
    error: str | None = None  # the login failed: a message naming the step
    work: Callable[[], Action] | None = None  # CPU-heavy (SCRAM's PBKDF2): run off the event loop, then act

    @property
    def waits(self) -> bool:
        """Nothing to do but read more from the server."""
        return not (self.tls or self.done or self.error is not None or self.work is not None)


class UpstreamLogin(Protocol):
    proto: str
    trailing: bytes

    def start(self) -> Action: ...

    def feed(self, data: bytes) -> Action: ...

    def eof(self) -> Action: ...

    def tls_started(self) -> Action: ...


@dataclass
class Tls:
    """Where a ``tls`` action upgrades to: the name checked on the certificate, and the context."""

    host: str
    context: ssl.SSLContext


# The whole login, however the server paces it (a drip of notices or one byte at a time), ends by then.
LOGIN_DEADLINE = 30.0


async def run_upstream(machine: UpstreamLogin, stream: Stream, tls: Tls | None, timeout: float) -> Stream:
    """Drive ``machine`` over ``stream`` until done; returns the (maybe upgraded) stream or raises SessionError.

    ``timeout`` bounds each read; :data:`LOGIN_DEADLINE` the whole login.
    """
    try:
        async with asyncio.timeout(LOGIN_DEADLINE):
            return await _drive(machine, stream, tls, timeout)
    except TimeoutError:
        raise SessionError(f"{machine.proto} login timed out") from None


async def _drive(machine: UpstreamLogin, stream: Stream, tls: Tls | None, timeout: float) -> Stream:
    action = machine.start()
    try:
        while True:
            if action.send:
                stream[1].write(action.send)  # a few short lines: the next read waits for the answer anyway
            if action.error is not None:
                raise SessionError(action.error)
            if action.done:
                if machine.trailing:  # read past the last reply: hand it back for the splice
                    if stream[0].at_eof():  # nothing can follow it: the upstream already hung up
                        raise SessionError(f"{machine.proto} upstream closed the connection after the login")
                    stream[0].feed_data(machine.trailing)
                return stream
            if action.work is not None:
                action = await asyncio.to_thread(action.work)
                continue
            if action.tls:
                if tls is None:
                    raise SessionError(f"{machine.proto} TLS failed: no TLS context")
                if _buffered(stream[0]):  # sent before the TLS handshake, read as if after it: injection
                    raise SessionError(f"{machine.proto} TLS failed: the server sent data before the TLS handshake")
                stream = await secure(machine.proto, stream, tls.host, tls.context)
                action = machine.tls_started()
                continue
            data = await asyncio.wait_for(stream[0].read(CHUNK), timeout)
            action = machine.feed(data) if data else machine.eof()
    except (OSError, TimeoutError) as exc:  # a read timeout; the deadline arrives as a cancellation
        raise SessionError(f"{machine.proto} connect failed: {type(exc).__name__}") from None


def _buffered(reader: asyncio.StreamReader) -> int:
    """Bytes the reader holds that the machine has not been fed (asyncio has no public accessor)."""
    return len(getattr(reader, "_buffer", b""))
