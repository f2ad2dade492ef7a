"""PostgreSQL protocol 3.0 framing: just the messages a session handshake reads and writes."""

from __future__ import annotations

import asyncio
import struct

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_HANDSHAKE_MESSAGE = 1024 * 1024

# Authentication request codes ('R' messages).
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12


class ProtocolError(Exception):
    """The peer sent something that is not the PostgreSQL protocol (or too much of it)."""


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def cstring(text: str) -> bytes:
    if "\0" in text:
        raise ProtocolError("NUL byte in a protocol string")
    return text.encode() + b"\0"


def startup_message(params: dict[str, str]) -> bytes:
    body = struct.pack("!I", PROTOCOL_3_0) + b"".join(cstring(k) + cstring(v) for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST)


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One typed message: (type byte, payload)."""
    header = await reader.readexactly(5)
    (length,) = struct.unpack("!I", header[1:])
    if not 4 <= length <= MAX_HANDSHAKE_MESSAGE:
        raise ProtocolError(f"message length {length} out of range")
    return header[:1], await reader.readexactly(length - 4)


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One untyped startup-phase message: (request code or protocol version, the rest)."""
    (length,) = struct.unpack("!I", await reader.readexactly(4))
    if not 8 <= length <= 10_000:
        raise ProtocolError(f"startup packet length {length} out of range")
    body = await reader.readexactly(length - 4)
    return struct.unpack("!I", body[:4])[0], body[4:]


def parse_pairs(payload: bytes) -> dict[str, str]:
    """``key\\0value\\0…\\0`` (startup parameters) into a dict."""
    parts = payload.split(b"\0")
    pairs: dict[str, str] = {}
    for index in range(0, len(parts) - 1, 2):
        if not parts[index]:
            break
        pairs[parts[index].decode("utf-8", "replace")] = parts[index + 1].decode("utf-8", "replace")
    return pairs


def error_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their one-letter code (``S`` severity, ``C`` code, ``M`` text)."""
    fields: dict[str, str] = {}
    for item in payload.split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def error_response(code: str, text: str, severity: str = "FATAL") -> bytes:
    fields = b"S" + cstring(severity) + b"V" + cstring(severity) + b"C" + cstring(code) + b"M" + cstring(text)
    return message(b"E", fields + b"\0")


def auth_request(code: int, data: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!I", code) + data)


def negotiate_protocol(minor: int, unrecognized: list[str]) -> bytes:
    """NegotiateProtocolVersion: we speak 3.``minor`` and ignore the ``_pq_.`` options listed."""
    body = struct.pack("!II", minor, len(unrecognized)) + b"".join(cstring(name) for name in unrecognized)
    return message(b"v", body)
