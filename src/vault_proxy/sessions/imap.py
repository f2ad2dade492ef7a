"""IMAP sessions: the vault does STARTTLS and the login upstream; the local client logs in with anything.

Upstream: greeting, STARTTLS when the mode says so, CAPABILITY, then LOGIN with quoted strings, the
command every server knows. AUTHENTICATE PLAIN (SASL-IR when offered) is used instead when the server
advertises it and either says LOGINDISABLED or a value cannot be quoted (non-ASCII, control characters:
SASL defines them as UTF-8); without AUTH=PLAIN such a value goes as a LOGIN literal. LOGINDISABLED
without AUTH=PLAIN is a clear auth error. Local: ``* OK`` greeting,
CAPABILITY, NOOP, ID, LOGIN and AUTHENTICATE PLAIN with the session's client secret as the password
(any password when the session has none; a wrong one ends the session), LOGOUT; after the login
everything (pipelined commands included) is spliced to the already logged-in upstream.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl

from ..redaction import SecretSet
from ..vault.models import ImapAuth
from ..vault.secret import reveal
from .dial import Stream, secure
from .errors import ClientRejected, SessionError
from .imap_filter import ImapFilter
from .listener import Driver
from .local_login import imap_login_password, sasl_plain_password
from .masking import LineFrames, ReplyMask
from .steps import secret_matches

TIMEOUT = 15.0
MAX_LITERAL = 64 * 1024
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")
_CAPABILITY = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
# Capabilities that belong to the upstream's pre-login state or to the login itself, and COMPRESS (the
# session refuses it: the reply mask cannot read a deflate stream): never shown locally.
_PRE_LOGIN = ("STARTTLS", "LOGINDISABLED", "AUTH=", "SASL-IR", "COMPRESS=")


class _Upstream:
    """A tagged command/response conversation with the upstream server."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._counter = 0

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.stream[0].readline(), TIMEOUT)
        if not raw.endswith(b"\n"):
            raise SessionError("imap connect failed: the server closed the connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def next_tag(self) -> str:
        self._counter += 1
        return f"v{self._counter}"

    def send(self, text: str | bytes) -> str:
        """Start a command; returns its tag."""
        tag = self.next_tag()
        data = text if isinstance(text, bytes) else text.encode()
        self.stream[1].write(tag.encode() + b" " + data + b"\r\n")
        return tag

    async def until_tagged(self, tag: str) -> tuple[str, list[str]]:
        """Untagged lines up to the tagged one; returns (tagged status text, untagged lines)."""
        untagged: list[str] = []
        while True:
            line = await self.line()
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :], untagged
            untagged.append(line)

    async def continuation(self) -> str:
        """Wait for ``+`` (or the command failing early); returns the line."""
        while True:
            line = await self.line()
            if not line.startswith("* "):
                return line


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


async def _login_command(conn: _Upstream, user: str, password: str) -> str:
    """``LOGIN user password`` with quoted strings, or synchronizing literals where quoting cannot work."""
    tag = conn.next_tag()
    writer = conn.stream[1]
    pending = f"{tag} LOGIN".encode()
    for value in (user, password):
        quoted = _quote(value)
        if quoted is not None:
            pending += b" " + quoted.encode()
            continue
        data = value.encode()
        writer.write(pending + b" {%d}\r\n" % len(data))
        reply = await conn.continuation()
        if not reply.startswith("+"):
            raise SessionError(f"imap auth failed: {reply.replace(password, '***')[:200]}")
        pending = data
    writer.write(pending + b"\r\n")
    return tag


async def _authenticate_plain(conn: _Upstream, user: str, password: str, sasl_ir: bool) -> str:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    if sasl_ir:
        return conn.send(f"AUTHENTICATE PLAIN {token}")
    tag = conn.send("AUTHENTICATE PLAIN")
    reply = await conn.continuation()
    if reply.startswith(tag + " "):
        raise SessionError(f"imap auth failed: {reply[len(tag) + 1 :][:200]}")
    conn.stream[1].write(token.encode() + b"\r\n")
    return tag


async def login(stream: Stream, auth: ImapAuth, tls: ssl.SSLContext) -> tuple[Stream, list[str]]:
    """Greeting → (STARTTLS) → CAPABILITY → login; returns the stream and the post-login capabilities."""
    password = reveal(auth.imap_password)
    conn = _Upstream(stream)
    try:
        greeting = await conn.line()
        if greeting.upper().startswith("* PREAUTH"):
            return conn.stream, await _post_login_capabilities(conn, greeting)
        if not greeting.upper().startswith("* OK"):
            raise SessionError(f"imap connect failed: greeting {greeting[:100]!r}")
        if auth.imap_tls == "starttls":
            status, _ = await conn.until_tagged(conn.send("STARTTLS"))
            if not status.upper().startswith("OK"):
                raise SessionError(f"imap TLS failed: STARTTLS answered {status[:100]}")
            conn.stream = await secure("imap", conn.stream, auth.imap_host, tls)
        _, untagged = await conn.until_tagged(conn.send("CAPABILITY"))
        capabilities = {c.upper() for c in _capabilities(untagged)}
        quotable = _quote(auth.imap_user) is not None and _quote(password) is not None
        plain = "AUTH=PLAIN" in capabilities
        if "LOGINDISABLED" in capabilities and not plain:
            raise SessionError("imap auth failed: the server disables LOGIN here and offers no AUTH=PLAIN")
        if plain and ("LOGINDISABLED" in capabilities or not quotable):
            tag = await _authenticate_plain(conn, auth.imap_user, password, "SASL-IR" in capabilities)
        else:
            tag = await _login_command(conn, auth.imap_user, password)
        status, _ = await conn.until_tagged(tag)
        if not status.upper().startswith("OK"):
            raise SessionError(f"imap auth failed: {status.replace(password, '***')[:200]}")
        return conn.stream, await _post_login_capabilities(conn, status)
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"imap connect failed: {type(exc).__name__}") from None


async def _post_login_capabilities(conn: _Upstream, status: str) -> list[str]:
    match = _CAPABILITY.search(status)
    if match:
        listed = match.group(1).split()
    else:
        _, untagged = await conn.until_tagged(conn.send("CAPABILITY"))
        listed = _capabilities(untagged)
    return [c for c in listed if not c.upper().startswith(_PRE_LOGIN)]


async def _read_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One client command line, literals included (``{n}`` gets a ``+`` go-ahead, ``{n+}`` does not)."""
    command = b""
    while True:
        line = await reader.readline()
        if not line:
            return command
        command += line
        match = _LITERAL.search(line)
        if not match:
            return command
        size = int(match.group(1))
        if size > MAX_LITERAL:
            raise ValueError("literal too large")
        if not match.group(2):
            writer.write(b"+ go ahead\r\n")
            await writer.drain()
        command += await reader.readexactly(size)


def local_handshake(capabilities: list[str], client_secret: str | None = None):
    """The local side for one session; ``capabilities`` are the upstream's, shown after login. With a
    ``client_secret``, LOGIN / AUTHENTICATE PLAIN must carry it as the password (one try)."""
    local = " ".join(["IMAP4rev1", *[c for c in capabilities if c.upper() != "IMAP4REV1"], "AUTH=PLAIN", "SASL-IR"])
    after_login = " ".join(["IMAP4rev1", *[c for c in capabilities if c.upper() != "IMAP4REV1"]])
    how = "log in with the session's client secret" if client_secret else "any login is accepted here"

    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _upstream: Stream) -> bytes:
        def send(*lines: str) -> None:
            writer.write("".join(f"{line}\r\n" for line in lines).encode())

        async def logged_in(tag: str, password: bytes | None) -> bytes:
            if client_secret is not None and (password is None or not secret_matches(password, client_secret)):
                send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed")
                await writer.drain()
                raise ClientRejected("wrong client secret")
            send(f"{tag} OK [CAPABILITY {after_login}] Logged in")
            await writer.drain()
            return b""  # pipelined commands are still in ``reader``: the splice reads them next

        send(f"* OK [CAPABILITY {local}] vault-proxy IMAP ready ({how})")
        while True:
            await writer.drain()
            raw = await _read_command(reader, writer)
            if not raw:
                raise ClientRejected("closed before logging in")
            words = raw.split(b"\r\n", 1)[0].decode("utf-8", "replace").split(" ", 2)
            tag = words[0] if words[0] else "*"
            name = words[1].upper() if len(words) > 1 else ""
            argument = words[2] if len(words) > 2 else ""
            if name == "CAPABILITY":
                send(f"* CAPABILITY {local}", f"{tag} OK CAPABILITY completed")
            elif name == "NOOP":
                send(f"{tag} OK NOOP completed")
            elif name == "ID":
                send('* ID ("name" "vault-proxy")', f"{tag} OK ID completed")
            elif name == "LOGIN":
                return await logged_in(tag, imap_login_password(raw))
            elif name == "AUTHENTICATE":
                mechanism, _, initial = argument.partition(" ")
                if mechanism.upper() != "PLAIN":
                    send(f"{tag} NO [CANNOT] only AUTHENTICATE PLAIN is offered here")
                    continue
                if not initial:
                    send("+ ")
                    await writer.drain()
                    initial = (await reader.readline()).decode("utf-8", "replace").strip()
                    if initial == "*":
                        send(f"{tag} BAD AUTHENTICATE cancelled")
                        continue
                return await logged_in(tag, sasl_plain_password(initial))
            elif name == "LOGOUT":
                send("* BYE vault-proxy logging out", f"{tag} OK LOGOUT completed")
                await writer.drain()
                raise ClientRejected("closed before logging in")
            elif name == "STARTTLS":
                send(f"{tag} NO TLS is done upstream by the vault; this loopback side is plain")
            else:
                send(f"{tag} BAD log in first ({how})")

    return handshake


def driver(auth: ImapAuth, capabilities: list[str], client_secret: str | None) -> Driver:
    mask = ReplyMask.of(SecretSet(auth.secret_values()), LineFrames())
    return Driver(handshake=local_handshake(capabilities, client_secret), client_filter=ImapFilter(), reply_filter=mask)
