"""SMTP sessions: the vault does EHLO, STARTTLS and AUTH upstream; the local client logs in with a secret.

Upstream: greeting, EHLO, STARTTLS when the mode says so (then EHLO again), AUTH PLAIN, or AUTH LOGIN
when only that is offered. Local: ``220`` greeting, EHLO/HELO answered with the upstream's extensions
plus ``AUTH PLAIN LOGIN``, AUTH PLAIN/LOGIN (with or without an initial response) answered ``235`` when
its password is the session's client secret (any password without one; a wrong one ends the session),
MAIL before AUTH answered ``530``; after AUTH everything (pipelined bytes included) is spliced, so
MAIL/RCPT/DATA reach the authenticated upstream.
"""

from __future__ import annotations

import asyncio
import base64
import ssl

from ..redaction import SecretSet
from ..vault.models import SmtpAuth
from ..vault.secret import reveal
from .dial import Stream, secure
from .errors import ClientRejected, SessionError
from .listener import Driver
from .local_login import base64_text, sasl_plain_password
from .masking import LineFrames, ReplyMask
from .steps import secret_matches

TIMEOUT = 15.0
_HIDDEN = ("AUTH", "STARTTLS", "CHUNKING", "PIPELINING")  # never offered locally


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One (possibly multi-line) reply: its code and its text lines."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not raw:
            raise SessionError("smtp connect failed: the server closed the connection")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdecimal():
            raise SessionError("smtp connect failed: not an SMTP server")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines


async def _command(stream: Stream, line: str) -> tuple[int, list[str]]:
    stream[1].write(line.encode() + b"\r\n")
    return await _reply(stream[0])


async def login(stream: Stream, auth: SmtpAuth, tls: ssl.SSLContext) -> tuple[Stream, list[str]]:
    """Greeting → EHLO → (STARTTLS → EHLO) → AUTH; returns the stream and the extensions to show locally."""
    password = reveal(auth.smtp_password)
    try:
        code, _ = await _reply(stream[0])
        if code != 220:
            raise SessionError(f"smtp connect failed: greeting {code}")
        code, ehlo = await _command(stream, "EHLO vault-proxy")
        if code != 250:
            raise SessionError(f"smtp connect failed: EHLO answered {code}")
        if auth.smtp_tls == "starttls":
            if not any(line.upper().startswith("STARTTLS") for line in ehlo[1:]):
                raise SessionError("smtp TLS failed: the server does not offer STARTTLS")
            code, _ = await _command(stream, "STARTTLS")
            if code != 220:
                raise SessionError(f"smtp TLS failed: STARTTLS answered {code}")
            stream = await secure("smtp", stream, auth.smtp_host, tls)
            code, ehlo = await _command(stream, "EHLO vault-proxy")
        mechanisms = {m.upper() for line in ehlo[1:] if line.upper().startswith("AUTH") for m in line[5:].split()}
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{auth.smtp_user}\0{password}".encode()).decode()
            code, text = await _command(stream, f"AUTH PLAIN {token}")
        else:
            code, _ = await _command(stream, "AUTH LOGIN")
            if code == 334:
                code, _ = await _command(stream, base64.b64encode(auth.smtp_user.encode()).decode())
            if code == 334:
                code, text = await _command(stream, base64.b64encode(password.encode()).decode())
            else:
                text = []
        if code != 235:
            detail = " ".join(text)[:200].replace(password, "***") if code != 334 else ""
            raise SessionError(f"smtp auth failed: {code} {detail}".strip())
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"smtp connect failed: {type(exc).__name__}") from None
    extensions = [line for line in ehlo[1:] if not line.upper().startswith(_HIDDEN)]
    return stream, extensions


def local_handshake(extensions: list[str], client_secret: str | None = None):
    """The local side for one session, offering the upstream's ``extensions`` plus AUTH. With a
    ``client_secret``, AUTH PLAIN / LOGIN must carry it as the password (one try)."""
    how = "log in with the session's client secret" if client_secret else "any login is accepted here"

    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _upstream: Stream) -> bytes:
        def send(*lines: str) -> None:
            writer.write("".join(f"{line}\r\n" for line in lines).encode())

        async def answer(prompt: str) -> str:
            send(prompt)
            await writer.drain()
            return (await reader.readline()).decode("utf-8", "replace").strip()

        send(f"220 127.0.0.1 vault-proxy ESMTP ready ({how})")
        while True:
            raw = await reader.readline()
            if not raw:
                raise ClientRejected("closed before logging in")
            verb = raw.decode("utf-8", "replace").strip().split(" ", 1)
            name, arg = verb[0].upper(), (verb[1] if len(verb) > 1 else "")
            if name == "EHLO":
                features = [*extensions, "AUTH PLAIN LOGIN"]
                send("250-127.0.0.1", *[f"250-{f}" for f in features[:-1]], f"250 {features[-1]}")
            elif name == "HELO":
                send("250 127.0.0.1")
            elif name == "AUTH":
                mechanism, _, initial = arg.partition(" ")
                if mechanism.upper() == "PLAIN":
                    password = sasl_plain_password(initial if initial else await answer("334 "))
                elif mechanism.upper() == "LOGIN":
                    if not initial:
                        await answer("334 VXNlcm5hbWU6")
                    password = base64_text(await answer("334 UGFzc3dvcmQ6"))
                else:
                    send("504 5.5.4 use AUTH PLAIN or AUTH LOGIN")
                    continue
                if client_secret is not None and (password is None or not secret_matches(password, client_secret)):
                    send("535 5.7.8 Authentication credentials invalid")
                    await writer.drain()
                    raise ClientRejected("wrong client secret")
                send("235 2.7.0 Authentication successful")
                await writer.drain()
                return b""  # anything pipelined is still in ``reader``: the splice reads it next
            elif name in ("MAIL", "RCPT", "DATA", "BDAT"):
                send("530 5.7.0 Authentication required")
            elif name in ("NOOP", "RSET"):
                send("250 2.0.0 OK")
            elif name == "QUIT":
                send("221 2.0.0 Bye")
                await writer.drain()
                raise ClientRejected("closed before logging in")
            elif name == "STARTTLS":
                send("454 4.7.0 TLS is done by the vault upstream")
            else:
                send("502 5.5.2 command not available before AUTH")
            await writer.drain()

    return handshake


def driver(auth: SmtpAuth, extensions: list[str], client_secret: str | None) -> Driver:
    mask = ReplyMask.of(SecretSet(auth.secret_values()), LineFrames())
    return Driver(handshake=local_handshake(extensions, client_secret), reply_filter=mask)
