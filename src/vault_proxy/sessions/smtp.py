"""SMTP sessions: the vault does EHLO, STARTTLS and AUTH upstream; the local client logs in with a secret.

Upstream (:class:`SmtpLogin`, sans-I/O, run by ``handshake.run_upstream``): greeting, EHLO, STARTTLS
when the mode says so (then EHLO again), AUTH PLAIN, or AUTH LOGIN when only that is offered. Local
(:class:`SmtpLocal`, a client filter the listener drives): ``220`` greeting, EHLO/HELO answered with the
upstream's extensions plus ``AUTH PLAIN LOGIN``, AUTH PLAIN/LOGIN (with or without an initial response)
answered ``235`` when its password is the session's client secret (any password without one; a wrong
one ends the session), MAIL before AUTH answered ``530``; after AUTH everything (pipelined bytes
included) is passed on, so MAIL/RCPT/DATA reach the authenticated upstream.
"""

from __future__ import annotations

import base64
import ssl

from ..redaction import SecretSet
from ..vault.models import SmtpAuth
from ..vault.secret import reveal
from .dial import Stream
from .handshake import MAX_REPLY, Action, Tls, run_upstream
from .imap_local import safe_tokens
from .listener import Driver
from .local_login import base64_text, sasl_plain_password
from .masking import LineFrames, ReplyMask
from .steps import Step, secret_matches

TIMEOUT = 15.0
_HIDDEN = ("AUTH", "STARTTLS", "CHUNKING", "PIPELINING")  # never offered locally
MAX_LINE = 8 * 1024  # a client command line before AUTH


class SmtpLogin:
    """The upstream login, fed the server's bytes; ``extensions`` holds what to offer locally once done."""

    proto = "smtp"

    def __init__(self, user: str, password: str, starttls: bool, secrets: SecretSet | None = None) -> None:
        self._user, self._password, self._starttls = user, password, starttls
        self._secrets = secrets if secrets is not None else SecretSet([password] if password else [])
        self.step = "greeting"
        self.extensions: list[str] = []
        self.trailing = b""
        self._buffer = b""
        self._lines: list[str] = []
        self._held = 0  # characters in ``_lines``
        self._ehlo: list[str] = []
        self._finished = False

    def start(self) -> Action:
        return Action()

    def tls_started(self) -> Action:
        return self._send("EHLO again", "EHLO vault-proxy")

    def eof(self) -> Action:
        return self._fail("connect", "the server closed the connection")

    def feed(self, data: bytes) -> Action:
        """Every complete reply in the buffer moves the login on; their commands are sent together."""
        if self._finished:
            return Action(error=f"smtp {self.step} failed: fed after the end")
        self._buffer += data
        sent = b""
        while True:
            reply = self._next_reply()
            if isinstance(reply, Action):  # a malformed reply
                return self._end(Action(send=sent, error=reply.error))
            if reply is None:
                return Action(send=sent)
            action = self._on_reply(*reply)
            sent += action.send
            if action.tls and self._buffer:  # bytes before the TLS handshake: injected, refused
                action = self._fail("TLS", "the server sent data before the TLS handshake")
            if not action.waits:
                if action.done:
                    self.trailing, self._buffer = self._buffer, b""
                return self._end(Action(send=sent, tls=action.tls, done=action.done, error=action.error))

    def _end(self, action: Action) -> Action:
        self._finished = action.error is not None or action.done
        return action

    def _next_reply(self) -> tuple[int, list[str]] | Action | None:
        """One (possibly multi-line) reply out of the buffer: its code and text lines; None if incomplete."""
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            line = self._buffer[start:end].decode("utf-8", "replace").rstrip("\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdecimal():
                return self._fail("connect", "not an SMTP server")
            self._lines.append(line[4:])
            self._held += len(line)
            if line[3:4] != "-":
                self._buffer = self._buffer[start:]
                lines, self._lines, self._held = self._lines, [], 0
                return int(line[:3]), lines
            if self._held > MAX_REPLY:
                return self._fail("connect", "reply too long")
        self._buffer = self._buffer[start:]
        if len(self._buffer) + self._held > MAX_REPLY:
            return self._fail("connect", "reply too long")
        return None

    def _fail(self, kind: str, reason: str) -> Action:
        return Action(error=f"smtp {kind} failed: {reason} (at {self.step})")

    def _send(self, step: str, line: str) -> Action:
        self.step = step
        return Action(send=line.encode() + b"\r\n")

    def _on_reply(self, code: int, text: list[str]) -> Action:
        step = self.step
        if step == "greeting":
            if code != 220:
                return Action(error=f"smtp connect failed: greeting {code}")
            return self._send("EHLO", "EHLO vault-proxy")
        if step in ("EHLO", "EHLO again"):
            if code != 250:
                return Action(error=f"smtp connect failed: {step} answered {code}")
            self._ehlo = text
            if step == "EHLO" and self._starttls:
                if not any(line.upper().startswith("STARTTLS") for line in text[1:]):
                    return Action(error="smtp TLS failed: the server does not offer STARTTLS")
                return self._send("STARTTLS", "STARTTLS")
            return self._auth()
        if step == "STARTTLS":
            if code != 220:
                return Action(error=f"smtp TLS failed: STARTTLS answered {code}")
            self.step = "TLS handshake"
            return Action(tls=True)
        if step == "AUTH LOGIN" and code == 334:
            return self._send("AUTH LOGIN user", base64.b64encode(self._user.encode()).decode())
        if step == "AUTH LOGIN user" and code == 334:
            return self._send("AUTH LOGIN password", base64.b64encode(self._password.encode()).decode())
        if code == 235:
            self.step = "done"
            shown = safe_tokens(self._ehlo[1:], self._secrets)  # an extension holding a secret: dropped
            self.extensions = [line for line in shown if not line.upper().startswith(_HIDDEN)]
            return Action(done=True)
        detail = " ".join(text) if step in ("AUTH PLAIN", "AUTH LOGIN password") and code != 334 else ""
        return Action(error=self._auth_failure(code, detail))

    def _auth(self) -> Action:
        offered = [line[5:].split() for line in self._ehlo[1:] if line.upper().startswith("AUTH")]
        mechanisms = {m.upper() for names in offered for m in names}
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{self._user}\0{self._password}".encode()).decode()
            return self._send("AUTH PLAIN", f"AUTH PLAIN {token}")
        return self._send("AUTH LOGIN", "AUTH LOGIN")

    def _auth_failure(self, code: int, detail: str) -> str:
        detail = self._secrets.mask(detail)[:200]
        if self._password and self._password in detail:  # only a pathological password (``*``) survives
            detail = ""
        return f"smtp auth failed: {code} {detail}".strip()


async def login(stream: Stream, auth: SmtpAuth, tls: ssl.SSLContext) -> tuple[Stream, list[str]]:
    """Greeting → EHLO → (STARTTLS → EHLO) → AUTH; returns the stream and the extensions to show locally."""
    password = reveal(auth.smtp_password)
    machine = SmtpLogin(auth.smtp_user, password, auth.smtp_tls == "starttls", SecretSet(auth.secret_values()))
    stream = await run_upstream(machine, stream, Tls(auth.smtp_host, tls), TIMEOUT)
    return stream, machine.extensions


class SmtpLocal:
    """The local side as a client filter: answers until AUTH carries the client secret, then passes bytes on."""

    def __init__(
        self, extensions: list[str], client_secret: str | None = None, secrets: SecretSet | None = None
    ) -> None:
        # Upstream extension lines are upstream text shown before the reply mask runs: any holding a
        # secret is dropped (no valid extension holds one).
        self._extensions, self._secret = safe_tokens(extensions, secrets or SecretSet()), client_secret
        self._buffer = b""
        self._auth: str | None = None  # "PLAIN", "LOGIN user", "LOGIN password" while a 334 is answered
        self.logged_in = False
        how = "log in with the session's client secret" if client_secret else "any login is accepted here"
        self.greeting = f"220 127.0.0.1 vault-proxy ESMTP ready ({how})\r\n".encode()

    def feed(self, data: bytes) -> Step:
        if self.logged_in:
            return Step(to_upstream=data)
        self._buffer += data
        replies: list[str] = []
        start = 0
        while not self.logged_in and (end := self._buffer.find(b"\n", start)) >= 0:
            answer = self._line(self._buffer[start:end].decode("utf-8", "replace").strip())
            start = end + 1
            replies.extend(answer.lines)
            if answer.close is not None:
                return Step(to_client=_text(replies), close=answer.close)
        self._buffer = self._buffer[start:]
        if self.logged_in:
            rest, self._buffer = self._buffer, b""
            return Step(to_upstream=rest, to_client=_text(replies))
        if len(self._buffer) > MAX_LINE:
            return Step(to_client=_text([*replies, "500 5.5.2 line too long"]), close="line too long before logging in")
        return Step(to_client=_text(replies))

    def _line(self, line: str) -> _Answer:
        if self._auth is not None:
            return self._auth_answer(line)
        name, _, arg = line.partition(" ")
        name = name.upper()
        if name == "EHLO":
            features = [*self._extensions, "AUTH PLAIN LOGIN"]
            return _Answer(["250-127.0.0.1", *[f"250-{f}" for f in features[:-1]], f"250 {features[-1]}"])
        if name == "HELO":
            return _Answer(["250 127.0.0.1"])
        if name == "AUTH":
            mechanism, _, initial = arg.partition(" ")
            if mechanism.upper() == "PLAIN":
                if initial:
                    return self._check(sasl_plain_password(initial))
                self._auth = "PLAIN"
                return _Answer(["334 "])
            if mechanism.upper() == "LOGIN":
                self._auth = "LOGIN password" if initial else "LOGIN user"
                return _Answer(["334 UGFzc3dvcmQ6" if initial else "334 VXNlcm5hbWU6"])
            return _Answer(["504 5.5.4 use AUTH PLAIN or AUTH LOGIN"])
        if name in ("MAIL", "RCPT", "DATA", "BDAT"):
            return _Answer(["530 5.7.0 Authentication required"])
        if name in ("NOOP", "RSET"):
            return _Answer(["250 2.0.0 OK"])
        if name == "QUIT":
            return _Answer(["221 2.0.0 Bye"], close="closed before logging in")
        if name == "STARTTLS":
            return _Answer(["454 4.7.0 TLS is done by the vault upstream"])
        return _Answer(["502 5.5.2 command not available before AUTH"])

    def _auth_answer(self, line: str) -> _Answer:
        stage, self._auth = self._auth, None
        if stage == "LOGIN user":
            self._auth = "LOGIN password"
            return _Answer(["334 UGFzc3dvcmQ6"])
        return self._check(sasl_plain_password(line) if stage == "PLAIN" else base64_text(line))

    def _check(self, password: bytes | None) -> _Answer:
        if self._secret is not None and (password is None or not secret_matches(password, self._secret)):
            return _Answer(["535 5.7.8 Authentication credentials invalid"], close="wrong client secret")
        self.logged_in = True
        return _Answer(["235 2.7.0 Authentication successful"])


class _Answer:
    def __init__(self, lines: list[str], close: str | None = None) -> None:
        self.lines, self.close = lines, close


def _text(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


def driver(auth: SmtpAuth, extensions: list[str], client_secret: str | None) -> Driver:
    secrets = SecretSet(auth.secret_values())
    local = SmtpLocal(extensions, client_secret, secrets)
    mask = ReplyMask.of(secrets, LineFrames())
    return Driver(greeting=local.greeting, client_filter=local, reply_filter=mask)
