"""The password a local IMAP or SMTP client logs in with, read out of its command (pure functions).

Only the password matters here: it must be the session's client secret. The user name is ignored.
"""

from __future__ import annotations

import base64
import binascii
import re

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n")
_ATOM_END = re.compile(rb"[ \r\n]")


def sasl_plain_password(encoded: bytes | str) -> bytes | None:
    """The password of a SASL PLAIN response (``base64(authzid NUL user NUL password)``); None if malformed."""
    raw = encoded.encode() if isinstance(encoded, str) else encoded
    try:
        decoded = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    parts = decoded.split(b"\0")
    return parts[2] if len(parts) == 3 else None


def base64_text(encoded: bytes | str) -> bytes | None:
    """A base64 line (AUTH LOGIN's answers); None if malformed."""
    raw = encoded.encode() if isinstance(encoded, str) else encoded
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _astring(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """One IMAP astring at ``pos``: a quoted string, a literal (its data inline) or an atom."""
    if data[pos : pos + 1] == b'"':
        out, pos = bytearray(), pos + 1
        while pos < len(data):
            char = data[pos : pos + 1]
            if char == b"\\" and pos + 1 < len(data):
                out += data[pos + 1 : pos + 2]
                pos += 2
            elif char == b'"':
                return bytes(out), pos + 1
            else:
                out += char
                pos += 1
        return None
    literal = _LITERAL.match(data, pos)
    if literal:
        start = literal.end()
        end = start + int(literal.group(1))
        return (data[start:end], end) if end <= len(data) else None
    end_match = _ATOM_END.search(data, pos)
    end = end_match.start() if end_match else len(data)
    return (data[pos:end], end) if end > pos else None


def imap_login_password(command: bytes) -> bytes | None:
    """The password of ``tag LOGIN user password`` (literals included inline); None if malformed."""
    parts = command.split(b" ", 2)
    if len(parts) < 3:
        return None
    args, pos = parts[2], 0
    values = []
    for _ in range(2):
        parsed = _astring(args, pos)
        if parsed is None:
            return None
        value, pos = parsed
        values.append(value)
        if len(values) == 1:
            if args[pos : pos + 1] != b" ":
                return None
            pos += 1
    return values[1] if args[pos:].strip(b"\r\n") == b"" else None
