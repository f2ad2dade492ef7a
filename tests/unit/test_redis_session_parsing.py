"""The Redis session's local side: command parsing and the HELLO rewrite."""

from __future__ import annotations

import asyncio

import pytest

from vault_proxy.sessions.redis import _Incomplete, encode, local_handshake, parse_command, without_auth


def test_parse_resp_and_inline_commands():
    raw = encode(b"SET", b"k", b"v\r\nx") + b"rest"
    assert parse_command(raw) == ([b"SET", b"k", b"v\r\nx"], len(raw) - 4)
    assert parse_command(b"PING hello\r\nmore") == ([b"PING", b"hello"], 12)
    for cut in (1, 5, len(raw) - 6):
        with pytest.raises(_Incomplete):
            parse_command(raw[:cut])


def test_hello_loses_only_its_auth_part():
    args = [b"HELLO", b"3", b"AUTH", b"user", b"pw", b"SETNAME", b"app"]
    assert without_auth(args) == [b"HELLO", b"3", b"SETNAME", b"app"]
    assert without_auth([b"HELLO", b"3"]) == [b"HELLO", b"3"]


async def _handshake(client_bytes: bytes) -> tuple[bytes, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(client_bytes)
    reader.feed_eof()
    answered = bytearray()

    class Writer:
        def write(self, data: bytes) -> None:
            answered.extend(data)

        async def drain(self) -> None:
            return None

    forwarded = await local_handshake(reader, Writer(), None)  # type: ignore[arg-type]
    return bytes(answered), forwarded


def test_client_auth_answered_locally_and_pipelined_bytes_kept():
    sent = encode(b"AUTH", b"anything") + encode(b"SELECT", b"1") + encode(b"GET", b"k")
    answered, forwarded = asyncio.run(_handshake(sent))
    assert answered == b"+OK\r\n"
    assert forwarded == encode(b"SELECT", b"1") + encode(b"GET", b"k")


def test_hello_with_auth_forwarded_without_credentials():
    sent = encode(b"HELLO", b"3", b"AUTH", b"default", b"local-pw") + encode(b"PING")
    answered, forwarded = asyncio.run(_handshake(sent))
    assert answered == b"" and b"local-pw" not in forwarded
    assert forwarded == encode(b"HELLO", b"3") + encode(b"PING")
