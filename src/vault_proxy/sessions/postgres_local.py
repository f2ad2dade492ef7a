"""The Postgres session's local login, sans-I/O: a client filter that also reads the upstream once.

SSLRequest and GSSENCRequest answered ``N``; the startup message's user and database play no part; the
password asked for (cleartext: the loopback hop) must be the session's client secret, when it has one
(else AuthenticationOk at once); a wrong one ends the session. The startup's other parameters are
applied upstream with ``set_config`` (``wants_upstream``: the listener feeds the upstream's answer to
``feed_upstream``) before the upstream's ParameterStatus (as changed by them), BackendKeyData and
ReadyForQuery are replayed, the stored secrets masked out of them (``SecretSet.mask``; the server chooses
them) and the parameters capped as in the upstream login. After the login client bytes go through
``PostgresFilter``.
"""

from __future__ import annotations

import re
import struct

from ..redaction import SecretSet
from . import postgres_wire as wire
from .postgres_filter import PostgresFilter
from .postgres_login import MAX_PARAMETERS, TOO_MANY_PARAMETERS, UpstreamState, merge_parameters
from .sql_check import READ_ONLY_REFUSAL, READ_ONLY_SETTINGS
from .steps import Step, secret_matches

_NOT_SETTINGS = {"user", "database", "replication", "options"}
MAX_STARTUP = 10_000
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


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


class PostgresLocal:
    """``step``: ``startup``, ``password``, ``settings`` (waiting for the upstream), ``done``."""

    def __init__(
        self, state: UpstreamState, client_secret: str | None = None, read_only: bool = False,
        secrets: SecretSet | None = None,
    ) -> None:  # fmt: skip
        self._state, self._secret, self._read_only = state, client_secret, read_only
        self._secrets = secrets if secrets is not None else state.secrets
        self._parameter_messages = 0
        self._filter = PostgresFilter(read_only)
        self._buffer = b""
        self._upstream = b""
        self._status: dict[str, str] = {}
        self._error: dict[str, str] = {}
        self._params: dict[str, str] = {}
        self.step = "startup"
        self.logged_in = False
        self.wants_upstream = False

    def feed(self, data: bytes) -> Step:
        if self.logged_in:
            return self._filter.feed(data)
        self._buffer += data
        out = b""
        while not self.logged_in and not self.wants_upstream:
            step = self._startup() if self.step == "startup" else self._password()
            if step is None:
                break
            out += step.to_client
            if step.close is not None or step.to_upstream:
                return Step(to_client=out, to_upstream=step.to_upstream, close=step.close)
        return self._after(Step(to_client=out))

    def _after(self, step: Step) -> Step:
        """Once logged in, bytes the client pipelined behind its login go through the filter."""
        if not self.logged_in or not self._buffer:
            return step
        rest, self._buffer = self._buffer, b""
        more = self._filter.feed(rest)
        return Step(to_client=step.to_client + more.to_client, to_upstream=more.to_upstream, close=more.close)

    def _refuse(self, code: str, text: str, out: bytes = b"") -> Step:
        return Step(to_client=out + wire.error_response(code, text), close=f"startup refused (SQLSTATE {code})")

    def _startup(self) -> Step | None:
        if len(self._buffer) < 4:
            return None
        (length,) = struct.unpack("!I", self._buffer[:4])
        if not 8 <= length <= MAX_STARTUP:
            return Step(close=f"startup packet length {length} out of range")
        if len(self._buffer) < length:
            return None
        body, self._buffer = self._buffer[4:length], self._buffer[length:]
        (code,), rest = struct.unpack("!I", body[:4]), body[4:]
        if code in (wire.SSL_REQUEST, wire.GSSENC_REQUEST):
            return Step(to_client=b"N")  # the loopback side is plain; TLS is done upstream
        if code == wire.CANCEL_REQUEST:
            return self._refuse("0A000", "cancel requests are not supported through a vault session")
        if code >> 16 != 3:
            return self._refuse("0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
        params = wire.parse_pairs(rest)
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            return self._refuse("0A000", "replication connections are not supported through a vault session")
        self._params = params
        protocol_options = [name for name in params if name.startswith("_pq_.")]
        out = wire.negotiate_protocol(0, protocol_options) if code & 0xFFFF or protocol_options else b""
        if self._secret is not None:
            self.step = "password"
            return Step(to_client=out + wire.auth_request(wire.AUTH_CLEARTEXT))
        return self._settings(out)

    def _password(self) -> Step | None:
        if len(self._buffer) < 5:
            return None
        (length,) = struct.unpack("!I", self._buffer[1:5])
        if not 4 <= length <= wire.MAX_HANDSHAKE_MESSAGE:
            return Step(close=f"password message length {length} out of range")
        if len(self._buffer) < 1 + length:
            return None
        kind, payload = self._buffer[:1], self._buffer[5 : 1 + length]
        self._buffer = self._buffer[1 + length :]
        assert self._secret is not None
        if kind == b"p" and secret_matches(payload.split(b"\0", 1)[0], self._secret):
            return self._settings(b"")
        error = wire.error_response("28P01", "password authentication failed: use the session's client_secret")
        return Step(to_client=error, close="wrong client secret" if kind == b"p" else "no password sent")

    def _settings(self, out: bytes) -> Step:
        self._status = dict(self._state.parameters)
        settings = startup_settings(self._params)
        if self._read_only and READ_ONLY_SETTINGS & {name.lower() for name in settings}:
            return self._refuse(READ_ONLY_REFUSAL[0], READ_ONLY_REFUSAL[1], out)
        if not settings:
            return self._replay(out)
        calls = ", ".join(f"pg_catalog.set_config({_literal(k)}, {_literal(v)}, false)" for k, v in settings.items())
        self.step, self.wants_upstream = "settings", True
        return Step(to_client=out, to_upstream=wire.message(b"Q", wire.cstring(f"SELECT {calls}")))

    def feed_upstream(self, data: bytes) -> Step:
        """The upstream's answer to the ``set_config`` query (empty: the upstream closed)."""
        if not data:
            return Step(close="the upstream closed during the startup")
        self._upstream += data
        while len(self._upstream) >= 5:
            (length,) = struct.unpack("!I", self._upstream[1:5])
            if not 4 <= length <= wire.MAX_HANDSHAKE_MESSAGE:
                return Step(close="the upstream broke off the startup")
            if len(self._upstream) < 1 + length:
                break
            kind, payload = self._upstream[:1], self._upstream[5 : 1 + length]
            self._upstream = self._upstream[1 + length :]
            if kind == b"S":
                self._parameter_messages += 1
                if self._parameter_messages > MAX_PARAMETERS or not merge_parameters(self._status, payload):
                    self.wants_upstream = False
                    return self._refuse("08P01", f"the upstream sent {TOO_MANY_PARAMETERS}")
            elif kind == b"E":
                self._error = wire.error_fields(payload)
            elif kind == b"Z":
                self.wants_upstream = False
                if self._error:
                    code = self._error.get("C", "")
                    code = code if _SQLSTATE.fullmatch(code) and self._secrets.mask(code) == code else "XX000"
                    text = self._secrets.mask(self._error.get("M", "invalid startup parameter"))[:1000]
                    return self._refuse(code, text)
                return self._after(self._replay(b""))
        return Step()

    def _replay(self, out: bytes) -> Step:
        mask = self._secrets.mask
        replay = [wire.message(b"S", wire.cstring(mask(k)) + wire.cstring(mask(v))) for k, v in self._status.items()]
        key = self._state.backend_key
        if key and self._secrets.mask_bytes(key) == key:  # a key holding a secret is not replayed
            replay.append(wire.message(b"K", key))
        self.step, self.logged_in = "done", True
        return Step(to_client=out + wire.auth_request(wire.AUTH_OK) + b"".join(replay) + wire.message(b"Z", b"I"))
