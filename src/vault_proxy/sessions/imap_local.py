"""The IMAP session's local login, sans-I/O: a client filter that answers until the client secret comes.

``* OK`` greeting, CAPABILITY, NOOP, ID, LOGIN and AUTHENTICATE PLAIN with the session's client secret
as the password (any password when the session has none; a wrong one ends the session), LOGOUT. Client
commands are framed as IMAP frames them (a line, ``{n}`` literals answered ``+ go ahead``, ``{n+}`` not).
After the login every byte (pipelined commands included) goes through ``ImapFilter`` to the upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..redaction import SecretSet
from .imap_filter import ImapFilter
from .local_login import imap_login_password, sasl_plain_password
from .steps import Step, secret_matches

MAX_LITERAL = 64 * 1024
MAX_LINE = 64 * 1024
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")


class ImapLocal:
    def __init__(
        self, capabilities: list[str], client_secret: str | None = None, secrets: SecretSet | None = None
    ) -> None:
        # Upstream capabilities are upstream text shown before the reply mask runs: any holding a
        # secret is dropped (no valid capability holds one).
        shown = safe_tokens(capabilities, secrets or SecretSet())
        others = [c for c in shown if c.upper() != "IMAP4REV1"]
        self._local = " ".join(["IMAP4rev1", *others, "AUTH=PLAIN", "SASL-IR"])
        self._after_login = " ".join(["IMAP4rev1", *others])
        self._secret = client_secret
        self._how = "log in with the session's client secret" if client_secret else "any login is accepted here"
        self.greeting = f"* OK [CAPABILITY {self._local}] vault-proxy IMAP ready ({self._how})\r\n".encode()
        self._filter = ImapFilter()
        self._buffer = b""
        self._command = b""  # the command so far (lines and literal data)
        self._literal = 0  # literal bytes still to read into ``_command``
        self._authenticating: str | None = None  # the tag of an AUTHENTICATE PLAIN waiting for its response
        self.logged_in = False

    def feed(self, data: bytes) -> Step:
        if self.logged_in:
            return self._filter.feed(data)
        self._buffer += data
        out: list[str] = []
        start = 0
        while not self.logged_in:
            if self._literal:
                take = self._buffer[start : start + self._literal]
                self._command += take
                self._literal -= len(take)
                start += len(take)
                if self._literal:
                    break
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            line, start = self._buffer[start : end + 1], end + 1
            self._command += line
            literal = _LITERAL.search(line)
            if literal and self._authenticating is None:
                size = int(literal.group(1))
                if size > MAX_LITERAL:
                    return Step(to_client=_text(out), close="literal too large")
                if not literal.group(2):
                    out.append("+ go ahead")
                self._literal = size
                continue
            command, self._command = self._command, b""
            lines, close = self._on_command(command)
            out.extend(lines)
            if close is not None:
                return Step(to_client=_text(out), close=close)
        rest, self._buffer = self._buffer[start:], b""
        if not self.logged_in:
            self._buffer = rest
            if len(self._buffer) + len(self._command) > MAX_LINE + MAX_LITERAL:
                return Step(to_client=_text(out), close="command too long before logging in")
            return Step(to_client=_text(out))
        after = self._filter.feed(rest) if rest else Step()
        return Step(to_upstream=after.to_upstream, to_client=_text(out) + after.to_client, close=after.close)

    def _on_command(self, raw: bytes) -> tuple[list[str], str | None]:
        if self._authenticating is not None:
            tag, self._authenticating = self._authenticating, None
            response = raw.decode("utf-8", "replace").strip()
            if response == "*":
                return [f"{tag} BAD AUTHENTICATE cancelled"], None
            return self._check(tag, sasl_plain_password(response))
        words = raw.split(b"\r\n", 1)[0].decode("utf-8", "replace").split(" ", 2)
        tag = words[0] if words[0] else "*"
        name = words[1].upper() if len(words) > 1 else ""
        argument = words[2] if len(words) > 2 else ""
        if name == "CAPABILITY":
            return [f"* CAPABILITY {self._local}", f"{tag} OK CAPABILITY completed"], None
        if name == "NOOP":
            return [f"{tag} OK NOOP completed"], None
        if name == "ID":
            return ['* ID ("name" "vault-proxy")', f"{tag} OK ID completed"], None
        if name == "LOGIN":
            return self._check(tag, imap_login_password(raw))
        if name == "AUTHENTICATE":
            mechanism, _, initial = argument.partition(" ")
            if mechanism.upper() != "PLAIN":
                return [f"{tag} NO [CANNOT] only AUTHENTICATE PLAIN is offered here"], None
            if not initial:
                self._authenticating = tag
                return ["+ "], None
            return self._check(tag, sasl_plain_password(initial))
        if name == "LOGOUT":
            return ["* BYE vault-proxy logging out", f"{tag} OK LOGOUT completed"], "closed before logging in"
        if name == "STARTTLS":
            return [f"{tag} NO TLS is done upstream by the vault; this loopback side is plain"], None
        return [f"{tag} BAD log in first ({self._how})"], None

    def _check(self, tag: str, password: bytes | None) -> tuple[list[str], str | None]:
        if self._secret is not None and (password is None or not secret_matches(password, self._secret)):
            return [f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed"], "wrong client secret"
        self.logged_in = True
        return [f"{tag} OK [CAPABILITY {self._after_login}] Logged in"], None


def safe_tokens(tokens: Iterable[str], secrets: SecretSet) -> list[str]:
    """``tokens`` (capabilities, EHLO extensions) without those holding any form of a secret."""
    return [t for t in tokens if secrets.mask(t) == t]


def _text(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()
