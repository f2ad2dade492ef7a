"""The Postgres upstream login, sans-I/O: SSLRequest, startup, authentication, then the server's state.

``postgres_tls`` require / prefer / disable: SSLRequest first unless disabled (``S``: TLS; ``N``: plain,
refused under require). Startup as the stored user and database (with ``postgres_read_only``,
``default_transaction_read_only=on`` too). SCRAM-SHA-256 with the server's signature checked (PBKDF2
is ``work`` the runner does off the event loop); cleartext or md5 only when the server asks and the
connection is encrypted (SCRAM: exactly SASL, one SASLContinue, one SASLFinal, then AuthenticationOk; any
other order is refused). Then ParameterStatus (at most ``MAX_PARAMETERS`` pairs, ``MAX_PARAMETER_BYTES`` of
names and values) and BackendKeyData are kept until ReadyForQuery. Server words in errors are masked
through the service's ``SecretSet`` (kept on ``UpstreamState`` for the local replay too).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from ..redaction import SecretSet
from . import postgres_wire as wire
from .handshake import Action
from .scram import MECHANISM, ScramClient, ScramError

BROKE_OFF = "postgres connect failed: the server broke off the handshake"
MAX_PARAMETERS = 64
MAX_PARAMETER_BYTES = 16 * 1024
TOO_MANY_PARAMETERS = "too many server parameters"
BACKEND_KEY_LENGTH = 8  # protocol 3.0: process id and secret key


def merge_parameters(parameters: dict[str, str], payload: bytes) -> bool:
    """ParameterStatus ``payload`` into ``parameters``; False (nothing merged) past the caps."""
    if len(payload) > MAX_PARAMETER_BYTES:
        return False
    merged = {**parameters, **wire.parse_pairs(payload)}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in merged.items())
    if len(merged) > MAX_PARAMETERS or size > MAX_PARAMETER_BYTES:
        return False
    parameters.update(merged)
    return True


@dataclass
class UpstreamState:
    """What the upstream said after the login, to be replayed to the local client."""

    parameters: dict[str, str] = field(default_factory=dict)
    backend_key: bytes = b""
    secrets: SecretSet = field(default_factory=SecretSet, repr=False, compare=False)


def _md5_answer(user: str, password: str, salt: bytes) -> str:
    inner = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()


class PostgresLogin:
    """Fed the server's bytes; ``state`` holds what to replay locally once done.

    ``step``: ``SSLRequest``, ``auth`` (until AuthenticationOk), ``SCRAM proof`` (PBKDF2 running),
    ``login`` (until ReadyForQuery), ``done``.
    """

    proto = "postgres"

    def __init__(
        self, user: str, password: str, database: str, tls: str = "prefer", read_only: bool = False,
        secrets: SecretSet | None = None,
    ) -> None:  # fmt: skip
        self._user, self._password, self._tls = user, password, tls
        self._secrets = secrets if secrets is not None else SecretSet([password] if password else [])
        self._startup = {"user": user, "database": database}
        if read_only:
            self._startup["default_transaction_read_only"] = "on"
        self.step = "SSLRequest" if tls != "disable" else "auth"
        self.state = UpstreamState(secrets=self._secrets)
        self._parameter_messages = 0
        self.trailing = b""
        self._buffer = b""
        self._encrypted = False
        self._scram: ScramClient | None = None
        self._method: str | None = None  # the first authentication request answered
        self._scram_stage = ""  # "first" sent, "continued" (proof), "final" (signature checked)
        self._verified = False
        self._finished = False

    def start(self) -> Action:
        return Action(send=wire.ssl_request()) if self.step == "SSLRequest" else self._startup_message()

    def tls_started(self) -> Action:
        self._encrypted = True
        self.step = "auth"
        return self._startup_message()

    def eof(self) -> Action:
        return self._end(Action(error=f"{BROKE_OFF} (at {self.step})"))

    def feed(self, data: bytes) -> Action:
        if self._finished:
            return Action(error=f"postgres {self.step} failed: fed after the end")
        self._buffer += data
        if self.step == "SSLRequest":
            return self._on_ssl_answer()
        return self._process()

    def _end(self, action: Action) -> Action:
        self._finished = action.error is not None or action.done
        return action

    def _startup_message(self) -> Action:
        try:
            return Action(send=wire.startup_message(self._startup))
        except wire.ProtocolError as exc:
            return self._end(Action(error=f"postgres connect failed: {exc}"))

    def _on_ssl_answer(self) -> Action:
        if not self._buffer:
            return Action()
        answer, self._buffer = self._buffer[:1], self._buffer[1:]
        if answer == b"S":
            if self._buffer:  # bytes before the TLS handshake: injected
                return self._end(Action(error="postgres TLS failed: the server sent data before the TLS handshake"))
            self.step = "TLS handshake"
            return Action(tls=True)
        if answer != b"N":
            return self._end(Action(error="postgres connect failed: not a PostgreSQL server"))
        if self._tls == "require":
            return self._end(
                Action(error="postgres TLS failed: the server does not accept TLS (postgres_tls is require)")
            )
        self.step = "auth"
        started = self._startup_message()
        if started.error is not None:
            return started
        more = self._process()
        return Action(send=started.send + more.send, done=more.done, error=more.error, work=more.work)

    def _process(self) -> Action:
        """Every complete message in the buffer, in order, until one needs more than a reply."""
        sent = b""
        while len(self._buffer) >= 5:
            (length,) = struct.unpack("!I", self._buffer[1:5])
            if not 4 <= length <= wire.MAX_HANDSHAKE_MESSAGE:
                return self._end(Action(send=sent, error=f"{BROKE_OFF} (at {self.step})"))
            if len(self._buffer) < 1 + length:
                break
            kind, payload = self._buffer[:1], self._buffer[5 : 1 + length]
            self._buffer = self._buffer[1 + length :]
            action = self._on_message(kind, payload)
            sent += action.send
            if not action.waits:
                if action.done:
                    self.trailing, self._buffer = self._buffer, b""
                return self._end(Action(send=sent, done=action.done, error=action.error, work=action.work))
        return Action(send=sent)

    def _server_error(self, step: str, payload: bytes) -> Action:
        fields = wire.error_fields(payload)
        text = self._secrets.mask(f"{fields.get('M', 'error')} (SQLSTATE {fields.get('C', '?')})")[:200]
        if self._password and self._password in text:
            text = f"(SQLSTATE {fields.get('C', '?')})"[:200]
        return Action(error=f"postgres {step} failed: {text}")

    def _out_of_order(self, code: int) -> Action:
        return Action(error=f"postgres auth failed: authentication request {code} out of order")

    def _on_message(self, kind: bytes, payload: bytes) -> Action:
        if self.step == "login":
            return self._on_login_message(kind, payload)
        if kind == b"E":
            return self._server_error("auth", payload)
        if kind != b"R" or len(payload) < 4:
            return Action(error="postgres auth failed: unexpected message from the server")
        (code,) = struct.unpack("!I", payload[:4])
        data = payload[4:]
        if code == wire.AUTH_OK:
            if self._scram is not None and not self._verified:
                return Action(error="postgres auth failed: the server skipped the SCRAM signature")
            self.step = "login"
            return Action()
        if code == wire.AUTH_SASL:
            if self._method is not None:
                return self._out_of_order(code)
            self._method = "scram"
            if MECHANISM.encode() not in data.split(b"\0"):
                return Action(error="postgres auth failed: the server offers no SCRAM-SHA-256")
            self._scram = ScramClient(self._password)
            self._scram_stage = "first"
            first = self._scram.first_message()
            return Action(send=wire.message(b"p", wire.cstring(MECHANISM) + struct.pack("!i", len(first)) + first))
        if code == wire.AUTH_SASL_CONTINUE:
            if self._scram is None or self._scram_stage != "first":
                return self._out_of_order(code)
            self._scram_stage = "continued"
            self.step = "SCRAM proof"
            return Action(work=lambda: self._prove(data))
        if code == wire.AUTH_SASL_FINAL:
            if self._scram is None or self._scram_stage != "continued":
                return self._out_of_order(code)
            self._scram_stage = "final"
            try:
                self._scram.verify_server(data)
            except ScramError as exc:
                return Action(error=self._secrets.mask(f"postgres auth failed: {exc}"))
            self._verified = True
            return Action()
        if code in (wire.AUTH_CLEARTEXT, wire.AUTH_MD5):
            if self._method is not None:
                return self._out_of_order(code)
            self._method = "password"
            method = "cleartext" if code == wire.AUTH_CLEARTEXT else "md5"
            if not self._encrypted:
                return Action(
                    error=f"postgres auth failed: the server asks for a {method} password on an unencrypted "
                    "connection; refused (set postgres_tls to require)"
                )
            answer = self._password
            if code == wire.AUTH_MD5:
                answer = _md5_answer(self._user, self._password, data[:4])
            try:
                return Action(send=wire.message(b"p", wire.cstring(answer)))
            except wire.ProtocolError:
                return Action(error="postgres auth failed: the password cannot be sent as a protocol string")
        return Action(error=f"postgres auth failed: unsupported authentication request {code}")

    def _prove(self, server_first: bytes) -> Action:
        """The SCRAM client proof (PBKDF2: the runner calls this in a thread), then whatever is buffered."""
        assert self._scram is not None
        try:
            proof = wire.message(b"p", self._scram.final_message(server_first))
        except ScramError as exc:
            return self._end(Action(error=self._secrets.mask(f"postgres auth failed: {exc}")))
        self.step = "auth"
        more = self._process()
        return Action(send=proof + more.send, done=more.done, error=more.error, work=more.work)

    def _on_login_message(self, kind: bytes, payload: bytes) -> Action:
        if kind == b"S":
            self._parameter_messages += 1
            if self._parameter_messages > MAX_PARAMETERS or not merge_parameters(self.state.parameters, payload):
                return Action(error=f"postgres login failed: {TOO_MANY_PARAMETERS}")
        elif kind == b"K":
            if len(payload) != BACKEND_KEY_LENGTH:
                return Action(error="postgres login failed: malformed BackendKeyData")
            self.state.backend_key = payload
        elif kind == b"E":
            return self._server_error("login", payload)
        elif kind == b"Z":
            self.step = "done"
            return Action(done=True)
        return Action()
