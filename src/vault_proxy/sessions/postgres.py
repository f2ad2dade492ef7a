"""Postgres sessions: the vault does TLS and SCRAM upstream; the local client logs in with the client secret.

Upstream: ``postgres_login.PostgresLogin`` (sans-I/O, run by ``handshake.run_upstream``): SSLRequest per
``postgres_tls``, startup, SCRAM-SHA-256, then the server's ParameterStatus and BackendKeyData until
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
import ssl

from ..redaction import SecretSet
from ..vault.models import PostgresAuth
from ..vault.secret import reveal
from . import postgres_wire as wire
from .dial import Stream
from .errors import ClientRejected
from .handshake import Tls, run_upstream
from .listener import Driver
from .masking import PostgresFrames, ReplyMask
from .postgres_filter import PostgresFilter
from .postgres_login import PostgresLogin, UpstreamState
from .sql_check import READ_ONLY_REFUSAL, READ_ONLY_SETTINGS
from .steps import secret_matches

TIMEOUT = 15.0
_NOT_SETTINGS = {"user", "database", "replication", "options"}


async def login(stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext) -> tuple[Stream, UpstreamState]:
    """TLS per mode, startup, authentication; returns the stream and what to replay locally."""
    machine = PostgresLogin(
        auth.postgres_user, reveal(auth.postgres_password), auth.postgres_db, auth.postgres_tls,
        auth.postgres_read_only, SecretSet(auth.secret_values()),
    )  # fmt: skip
    stream = await run_upstream(machine, stream, Tls(auth.postgres_host, tls), TIMEOUT)
    return stream, machine.state


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
