"""The login runner's guards against a hostile upstream (red-team round 3 of #15): bytes the server
sent before a TLS handshake are never read as if they came through it, and a login has one deadline
however the server paces its answers."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from vault_proxy.sessions import handshake
from vault_proxy.sessions.errors import SessionError
from vault_proxy.sessions.handshake import CHUNK, Action, Tls, run_upstream


class _Writer:
    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data


class _StartTls:
    """Asks for STARTTLS, and for the TLS upgrade once it has seen the go-ahead."""

    proto = "imap"
    trailing = b""

    def start(self) -> Action:
        return Action(send=b"a STARTTLS\r\n")

    def feed(self, data: bytes) -> Action:
        return Action(tls=True) if data.endswith(b"a OK begin TLS\r\n") else Action()

    def eof(self) -> Action:
        return Action(error="imap: closed")

    def tls_started(self) -> Action:
        return Action(done=True)


async def test_bytes_queued_behind_the_tls_go_ahead_are_refused():
    reader = asyncio.StreamReader()
    go_ahead = b"a OK begin TLS\r\n"
    filler = b"* " + b"x" * (CHUNK - len(go_ahead) - 4) + b"\r\n"  # the go-ahead ends exactly at one read
    reader.feed_data(filler + go_ahead + b"b OK LOGIN faked in plaintext\r\n")
    with pytest.raises(SessionError, match="data before the TLS handshake"):
        await run_upstream(_StartTls(), (reader, _Writer()), Tls("h", ssl.create_default_context()), 5)


class _Patient:
    """Never satisfied: every byte is 'a notice', the login never ends by itself."""

    proto = "postgres"
    trailing = b""

    def start(self) -> Action:
        return Action(send=b"startup")

    def feed(self, data: bytes) -> Action:
        return Action()

    def eof(self) -> Action:
        return Action(error="postgres: closed")

    def tls_started(self) -> Action:
        return Action(error="no")


async def test_a_login_dripped_forever_ends_at_the_deadline(monkeypatch):
    monkeypatch.setattr(handshake, "LOGIN_DEADLINE", 0.5)
    reader = asyncio.StreamReader()

    async def drip() -> None:
        for _ in range(100):  # bounded: 10 s at most
            reader.feed_data(b"N")
            await asyncio.sleep(0.1)

    task = asyncio.create_task(drip())
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(SessionError, match="login timed out"):
            await run_upstream(_Patient(), (reader, _Writer()), None, 5)
    finally:
        task.cancel()
    assert loop.time() - started < 3
