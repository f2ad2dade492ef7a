"""Postgres sessions: the vault does TLS and SCRAM upstream; the local client logs in with the client secret.

Upstream (``postgres_tls`` require / prefer / disable): SSLRequest, startup as the stored user and
database, SCRAM-SHA-256 with the server's signature checked (cleartext or md5 only when the server asks
and the connection is encrypted), then the server's ParameterStatus and BackendKeyData are kept until
ReadyForQuery (with ``postgres_read_only``, the startup also sets ``default_transaction_read_only=on``,
which RESET and DISCARD ALL return to). Local: SSLRequest and GSSENCRequest answered ``N``; the startup
message's user and database play no part; the password asked for (cleartext: the loopback hop) must be
the session's client secret, when it has one (else AuthenticationOk at once, no password asked); a wrong
one ends the session. The startup's other parameters (``application_name``,
``client_encoding``, ``-c name=value`` in ``options``, …) are applied upstream with ``set_config`` before
the upstream's ParameterStatus (as changed by them), BackendKeyData and ReadyForQuery are replayed.
A parameter the server rejects ends the session with its error, as a direct connection would.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import struct
from dataclasses import dataclass, field

from ..redaction import SecretSet
from ..vault.models import PostgresAuth
from ..vault.secret import reveal
from . import postgres_wire as wire
from .dial import Stream, secure
from .errors import ClientRejected, SessionError
from .listener import Driver
from .masking import PostgresFrames, ReplyMask
from .postgres_filter import PostgresFilter
from .scram import MECHANISM, ScramClient, ScramError
from .sql_check import READ_ONLY_REFUSAL, READ_ONLY_SETTINGS
from .steps import secret_matches

TIMEOUT = 15.0
_NOT_SETTINGS = {"user", "database", "replication", "options"}


@dataclass
class UpstreamState:
    """What the upstream said after the login, to be replayed to the local client."""

    parameters: dict[str, str] = field(default_factory=dict)
    backend_key: bytes = b""


async def _negotiate_tls(stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext) -> Stream:
    if auth.postgres_tls == "disable":
        return stream
    stream[1].write(wire.ssl_request())
    answer = await asyncio.wait_for(stream[0].readexactly(1), TIMEOUT)
    if answer == b"S":
        return await secure("postgres", stream, auth.postgres_host, tls)
    if answer != b"N":
        raise SessionError("postgres connect failed: not a PostgreSQL server")
    if auth.postgres_tls == "require":
        raise SessionError("postgres TLS failed: the server does not accept TLS (postgres_tls is require)")
    return stream


def _server_error(step: str, payload: bytes, password: str) -> SessionError:
    fields = wire.error_fields(payload)
    text = f"{fields.get('M', 'error')} (SQLSTATE {fields.get('C', '?')})".replace(password, "***")
    return SessionError(f"postgres {step} failed: {text[:200]}")


def _md5_answer(user: str, password: str, salt: bytes) -> str:
    inner = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()


async def _authenticate(stream: Stream, auth: PostgresAuth, password: str) -> None:
    """Answer the server's authentication requests until AuthenticationOk."""
    reader, writer = stream
    encrypted = writer.get_extra_info("ssl_object") is not None
    scram: ScramClient | None = None
    verified = False
    while True:
        kind, payload = await asyncio.wait_for(wire.read_message(reader), TIMEOUT)
        if kind == b"E":
            raise _server_error("auth", payload, password)
        if kind != b"R" or len(payload) < 4:
            raise SessionError("postgres auth failed: unexpected message from the server")
        (code,) = struct.unpack("!I", payload[:4])
        data = payload[4:]
        if code == wire.AUTH_OK:
            if scram is not None and not verified:
                raise SessionError("postgres auth failed: the server skipped the SCRAM signature")
            return
        if code == wire.AUTH_SASL:
            if MECHANISM.encode() not in data.split(b"\0"):
                raise SessionError("postgres auth failed: the server offers no SCRAM-SHA-256")
            scram = ScramClient(password)
            first = scram.first_message()
            writer.write(wire.message(b"p", wire.cstring(MECHANISM) + struct.pack("!i", len(first)) + first))
        elif code == wire.AUTH_SASL_CONTINUE and scram is not None:
            # PBKDF2 with the server's iteration count (up to 10 M): in a thread, never on the event loop.
            writer.write(wire.message(b"p", await asyncio.to_thread(scram.final_message, data)))
        elif code == wire.AUTH_SASL_FINAL and scram is not None:
            scram.verify_server(data)
            verified = True
        elif code in (wire.AUTH_CLEARTEXT, wire.AUTH_MD5):
            method = "cleartext" if code == wire.AUTH_CLEARTEXT else "md5"
            if not encrypted:
                raise SessionError(
                    f"postgres auth failed: the server asks for a {method} password on an unencrypted "
                    "connection; refused (set postgres_tls to require)"
                )
            answer = password if code == wire.AUTH_CLEARTEXT else _md5_answer(auth.postgres_user, password, data[:4])
            writer.write(wire.message(b"p", wire.cstring(answer)))
        else:
            raise SessionError(f"postgres auth failed: unsupported authentication request {code}")


async def login(stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext) -> tuple[Stream, UpstreamState]:
    """TLS per mode, startup, authentication; returns the stream and what to replay locally."""
    password = reveal(auth.postgres_password)
    try:
        stream = await _negotiate_tls(stream, auth, tls)
        startup = {"user": auth.postgres_user, "database": auth.postgres_db}
        if auth.postgres_read_only:
            startup["default_transaction_read_only"] = "on"
        stream[1].write(wire.startup_message(startup))
        await _authenticate(stream, auth, password)
        state = UpstreamState()
        while True:
            kind, payload = await asyncio.wait_for(wire.read_message(stream[0]), TIMEOUT)
            if kind == b"S":
                state.parameters.update(wire.parse_pairs(payload))
            elif kind == b"K":
                state.backend_key = payload
            elif kind == b"E":
                raise _server_error("login", payload, password)
            elif kind == b"Z":
                return stream, state
    except ScramError as exc:
        raise SessionError(f"postgres auth failed: {exc}") from None
    except (wire.ProtocolError, asyncio.IncompleteReadError):
        raise SessionError("postgres connect failed: the server broke off the handshake") from None
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"postgres connect failed: {type(exc).__name__}") from None


def _option_settings(options: str) -> dict[str, str]:
    """``-c name=value`` / ``--name=value`` pairs from a startup ``options`` string (backslash escapes)."""
    words, current, escaped = [], "", False
    for char in options:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    settings: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            index += 1
            word = "--" + words[index]
        elif word.startswith("-c"):
            word = "--" + word[2:]
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            settings[name.replace("-", "_")] = value
        index += 1
    return settings


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """The client's startup parameters that become settings upstream."""
    settings = {k: v for k, v in params.items() if k not in _NOT_SETTINGS and not k.startswith("_pq_.")}
    settings.update(_option_settings(params.get("options", "")))
    return settings


def _literal(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


async def _apply_settings(upstream: Stream, settings: dict[str, str], status: dict[str, str]) -> dict[str, str]:
    """Run ``set_config`` for each setting; ParameterStatus updates go into ``status``; returns an error or {}."""
    calls = ", ".join(f"pg_catalog.set_config({_literal(k)}, {_literal(v)}, false)" for k, v in settings.items())
    upstream[1].write(wire.message(b"Q", wire.cstring(f"SELECT {calls}")))
    error: dict[str, str] = {}
    while True:
        kind, payload = await asyncio.wait_for(wire.read_message(upstream[0]), TIMEOUT)
        if kind == b"S":
            status.update(wire.parse_pairs(payload))
        elif kind == b"E":
            error = wire.error_fields(payload)
        elif kind == b"Z":
            return error


async def _check_password(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str) -> None:
    """Ask for a cleartext password (the loopback hop) and compare it with the client secret."""
    writer.write(wire.auth_request(wire.AUTH_CLEARTEXT))
    await writer.drain()
    try:
        kind, payload = await wire.read_message(reader)
    except asyncio.IncompleteReadError:
        raise ClientRejected("no password sent (the session's client_secret is the password)") from None
    if kind == b"p" and secret_matches(payload.split(b"\0", 1)[0], secret):
        return
    writer.write(wire.error_response("28P01", "password authentication failed: use the session's client_secret"))
    await writer.drain()
    raise ClientRejected("wrong client secret" if kind == b"p" else "no password sent")


def local_handshake(state: UpstreamState, client_secret: str | None = None, read_only: bool = False):
    """The local side for one session: the client secret checked, the upstream's state replayed."""

    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Stream) -> bytes:
        def refuse(code: str, text: str) -> bytes:
            writer.write(wire.error_response(code, text))
            raise ClientRejected(f"startup refused (SQLSTATE {code})")

        while True:
            code, rest = await wire.read_startup(reader)
            if code not in (wire.SSL_REQUEST, wire.GSSENC_REQUEST):
                break
            writer.write(b"N")  # the loopback side is plain; TLS is done upstream
            await writer.drain()
        if code == wire.CANCEL_REQUEST:
            return refuse("0A000", "cancel requests are not supported through a vault session")
        if code >> 16 != 3:
            return refuse("0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
        params = wire.parse_pairs(rest)
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            return refuse("0A000", "replication connections are not supported through a vault session")
        protocol_options = [name for name in params if name.startswith("_pq_.")]
        if code & 0xFFFF or protocol_options:
            writer.write(wire.negotiate_protocol(0, protocol_options))
        if client_secret is not None:
            await _check_password(reader, writer, client_secret)
        status = dict(state.parameters)
        settings = startup_settings(params)
        if read_only and READ_ONLY_SETTINGS & {name.lower() for name in settings}:
            return refuse(READ_ONLY_REFUSAL[0], READ_ONLY_REFUSAL[1])
        if settings:
            error = await _apply_settings(upstream, settings, status)
            if error:
                return refuse(error.get("C", "XX000"), error.get("M", "invalid startup parameter"))
        replay = [wire.message(b"S", wire.cstring(k) + wire.cstring(v)) for k, v in status.items()]
        if state.backend_key:
            replay.append(wire.message(b"K", state.backend_key))
        writer.write(wire.auth_request(wire.AUTH_OK) + b"".join(replay) + wire.message(b"Z", b"I"))
        await writer.drain()
        return b""  # anything pipelined is still in ``reader``: the splice reads it next

    return handshake


def driver(state: UpstreamState, auth: PostgresAuth, client_secret: str | None) -> Driver:
    return Driver(
        handshake=local_handshake(state, client_secret, auth.postgres_read_only),
        client_filter=PostgresFilter(auth.postgres_read_only),
        reply_filter=ReplyMask.of(SecretSet(auth.secret_values()), PostgresFrames()),
    )
