"""IMAP sessions: the vault does STARTTLS and the login upstream; the local client logs in with a secret.

Upstream (:class:`ImapLogin`, sans-I/O, run by ``handshake.run_upstream``): greeting, STARTTLS when the
mode says so, CAPABILITY, then LOGIN with quoted strings, the command every server knows. AUTHENTICATE
PLAIN (SASL-IR when offered) is used instead when the server advertises it and either says LOGINDISABLED
or a value cannot be quoted (non-ASCII, control characters: SASL defines them as UTF-8); without
AUTH=PLAIN such a value goes as a LOGIN literal. LOGINDISABLED without AUTH=PLAIN is a clear auth error.
Local: ``imap_local.ImapLocal`` (the client secret login); after the login everything (pipelined
commands included) is spliced to the already logged-in upstream.
"""

from __future__ import annotations

import base64
import re
import ssl

from ..redaction import SecretSet
from ..vault.models import ImapAuth
from ..vault.secret import reveal
from .dial import Stream
from .handshake import MAX_REPLY, Action, Tls, run_upstream
from .imap_local import ImapLocal, safe_tokens
from .listener import Driver
from .masking import LineFrames, ReplyMask

TIMEOUT = 15.0
MAX_UNTAGGED = 16 * MAX_REPLY  # untagged lines held while waiting for one tagged reply
_CAPABILITY = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
# Capabilities that belong to the upstream's pre-login state or to the login itself, and COMPRESS (the
# session refuses it: the reply mask cannot read a deflate stream): never shown locally.
_PRE_LOGIN = ("STARTTLS", "LOGINDISABLED", "AUTH=", "SASL-IR", "COMPRESS=")


def _capabilities(untagged: list[str]) -> list[str]:
    for line in untagged:
        if line.upper().startswith("* CAPABILITY "):
            return line[len("* CAPABILITY ") :].split()
    return []


def _quote(value: str) -> str | None:
    """An IMAP quoted string, or None when the value needs a literal (control or non-ASCII characters)."""
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapLogin:
    """The upstream login, fed the server's bytes; ``capabilities`` holds the post-login ones once done.

    ``step`` names what the server is answering: ``greeting``, ``STARTTLS``, ``CAPABILITY``, ``LOGIN``
    (``LOGIN literal`` while a literal waits for ``+``), ``AUTHENTICATE``, ``post-login CAPABILITY``.
    """

    proto = "imap"

    def __init__(self, user: str, password: str, starttls: bool, secrets: SecretSet | None = None) -> None:
        self._user, self._password, self._starttls = user, password, starttls
        self._secrets = secrets if secrets is not None else SecretSet([password] if password else [])
        self.step = "greeting"
        self.capabilities: list[str] = []
        self.trailing = b""
        self._buffer = b""
        self._counter = 0
        self._tag = ""
        self._untagged: list[str] = []
        self._held = 0
        self._literals: list[bytes] = []  # LOGIN parts still to send after a ``+`` each
        self._finished = False

    def start(self) -> Action:
        return Action()

    def tls_started(self) -> Action:
        return self._command("CAPABILITY", "CAPABILITY")

    def eof(self) -> Action:
        return self._fail("the server closed the connection")

    def feed(self, data: bytes) -> Action:
        if self._finished:
            return Action(error=f"imap {self.step} failed: fed after the end")
        self._buffer += data
        sent, start = b"", 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            line = self._buffer[start:end].decode("utf-8", "replace").rstrip("\r")
            start = end + 1
            action = self._on_line(line)
            sent += action.send
            if action.tls and start < len(self._buffer):  # bytes before the TLS handshake: injected
                action = Action(error="imap TLS failed: the server sent data before the TLS handshake")
            if not action.waits:
                self._finished = not action.tls
                if action.done:
                    self.trailing = self._buffer[start:]
                self._buffer = b""
                return Action(send=sent, tls=action.tls, done=action.done, error=action.error)
            if self._held > MAX_UNTAGGED:
                return self._end(sent, self._fail("too many untagged lines"))
        self._buffer = self._buffer[start:]
        if len(self._buffer) > MAX_REPLY:
            return self._end(sent, self._fail("line too long"))
        return Action(send=sent)

    def _end(self, sent: bytes, action: Action) -> Action:
        self._finished = True
        return Action(send=sent, error=action.error)

    def _fail(self, reason: str) -> Action:
        return Action(error=f"imap connect failed: {reason} (at {self.step})")

    def _masked(self, text: str, limit: int = 200) -> str:
        masked = self._secrets.mask(text)[:limit]
        return "" if self._password and self._password in masked else masked

    def _shown(self, capabilities: list[str]) -> list[str]:
        """The post-login capabilities to show locally: no pre-login ones, none holding a secret."""
        return [c for c in safe_tokens(capabilities, self._secrets) if not c.upper().startswith(_PRE_LOGIN)]

    def _command(self, step: str, text: str | bytes) -> Action:
        """Start a tagged command; its tagged reply moves the login on."""
        self.step = step
        self._counter += 1
        self._tag = f"v{self._counter}"
        self._untagged, self._held = [], 0
        data = text if isinstance(text, bytes) else text.encode()
        return Action(send=self._tag.encode() + b" " + data + b"\r\n")

    def _on_line(self, line: str) -> Action:
        if self.step == "greeting":
            return self._on_greeting(line)
        if self.step in ("LOGIN literal", "AUTHENTICATE continuation"):
            return self._on_continuation(line)
        if not line.startswith(self._tag + " "):
            self._untagged.append(line)
            self._held += len(line)
            return Action()
        return self._on_tagged(line[len(self._tag) + 1 :])

    def _on_greeting(self, greeting: str) -> Action:
        if greeting.upper().startswith("* PREAUTH"):
            if self._starttls:  # a PREAUTH in clear would skip STARTTLS: a MITM stripping TLS
                return Action(error="imap TLS failed: STARTTLS required, but the server greeted PREAUTH")
            return self._post_login(greeting)
        if not greeting.upper().startswith("* OK"):
            return Action(error=f"imap connect failed: greeting {self._masked(greeting, 100)!r}")
        if self._starttls:
            return self._command("STARTTLS", "STARTTLS")
        return self._command("CAPABILITY", "CAPABILITY")

    def _on_tagged(self, status: str) -> Action:
        step = self.step
        if step == "STARTTLS":
            if not status.upper().startswith("OK"):
                return Action(error=f"imap TLS failed: STARTTLS answered {self._masked(status, 100)}")
            self.step = "TLS handshake"
            return Action(tls=True)
        if step == "CAPABILITY":
            return self._login({c.upper() for c in _capabilities(self._untagged)})
        if step in ("LOGIN", "AUTHENTICATE"):
            if not status.upper().startswith("OK"):
                return Action(error=f"imap auth failed: {self._masked(status)}")
            return self._post_login(status)
        self.capabilities = self._shown(_capabilities(self._untagged))
        self.step = "done"
        return Action(done=True)

    def _login(self, capabilities: set[str]) -> Action:
        quotable = _quote(self._user) is not None and _quote(self._password) is not None
        plain = "AUTH=PLAIN" in capabilities
        if "LOGINDISABLED" in capabilities and not plain:
            return Action(error="imap auth failed: the server disables LOGIN here and offers no AUTH=PLAIN")
        if plain and ("LOGINDISABLED" in capabilities or not quotable):
            token = base64.b64encode(f"\0{self._user}\0{self._password}".encode())
            if "SASL-IR" in capabilities:
                return self._command("AUTHENTICATE", b"AUTHENTICATE PLAIN " + token)
            self._literals = [token]
            action = self._command("AUTHENTICATE", "AUTHENTICATE PLAIN")
            self.step = "AUTHENTICATE continuation"
            return action
        parts: list[bytes] = []  # LOGIN with quoted strings, or synchronizing literals where quoting cannot work
        pending = b"LOGIN"
        for value in (self._user, self._password):
            quoted = _quote(value)
            if quoted is not None:
                pending += b" " + quoted.encode()
            else:
                data = value.encode()
                parts.append(pending + b" {%d}" % len(data))
                pending = data
        parts.append(pending)
        action = self._command("LOGIN", parts[0])
        self._literals = parts[1:]
        if self._literals:
            self.step = "LOGIN literal"
        return action

    def _on_continuation(self, line: str) -> Action:
        if line.startswith("* "):
            return Action()
        if self.step == "AUTHENTICATE continuation":
            if line.startswith(self._tag + " "):
                return Action(error=f"imap auth failed: {self._masked(line[len(self._tag) + 1 :])}")
            self.step = "AUTHENTICATE"
            return Action(send=self._literals.pop(0) + b"\r\n")
        if not line.startswith("+"):
            return Action(error=f"imap auth failed: {self._masked(line)}")
        data = self._literals.pop(0)
        if not self._literals:
            self.step = "LOGIN"
        return Action(send=data + b"\r\n")

    def _post_login(self, status: str) -> Action:
        match = _CAPABILITY.search(status)
        if not match:
            return self._command("post-login CAPABILITY", "CAPABILITY")
        self.capabilities = self._shown(match.group(1).split())
        self.step = "done"
        return Action(done=True)


async def login(stream: Stream, auth: ImapAuth, tls: ssl.SSLContext) -> tuple[Stream, list[str]]:
    """Greeting → (STARTTLS) → CAPABILITY → login; returns the stream and the post-login capabilities."""
    password = reveal(auth.imap_password)
    machine = ImapLogin(auth.imap_user, password, auth.imap_tls == "starttls", SecretSet(auth.secret_values()))
    stream = await run_upstream(machine, stream, Tls(auth.imap_host, tls), TIMEOUT)
    return stream, machine.capabilities


def driver(auth: ImapAuth, capabilities: list[str], client_secret: str | None) -> Driver:
    secrets = SecretSet(auth.secret_values())
    local = ImapLocal(capabilities, client_secret, secrets)
    mask = ReplyMask.of(secrets, LineFrames())
    return Driver(greeting=local.greeting, client_filter=local, reply_filter=mask)
