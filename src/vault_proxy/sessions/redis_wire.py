"""RESP framing as redis-server itself reads a client's input (``networking.c``), as pure functions.

The command filter must see exactly the commands Redis will run, so the corner cases follow Redis, not
the RESP spec: a count or length line ends at the first ``\\r`` and the byte after it is skipped unseen;
the two bytes after a bulk string are skipped unchecked; numbers are strict (``string2ll``); an inline
command is split the way ``sdssplitargs`` splits it (quotes, ``\\x41`` escapes, a closing quote must be
followed by a space).
"""

from __future__ import annotations

import re

INLINE_MAX = 64 * 1024  # PROTO_INLINE_MAX_SIZE: longer inline commands and count lines are protocol errors
BULK_MAX = 512 * 1024 * 1024  # proto-max-bulk-len's default
COUNT_MAX = 2**31 - 1
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")
_SPACE = b" \t\n\v\f\r"
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_HEX = b"0123456789abcdefABCDEF"


class ProtocolError(ValueError):
    """Input Redis answers with ``-ERR Protocol error: …`` and then closes the connection."""


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def error_reply(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


def number(raw: bytes) -> int | None:
    """``string2ll``: an optional minus, no leading zeros, no spaces, fits in 64 bits; None otherwise."""
    if not _NUMBER.fullmatch(raw):
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None


def split_inline(line: bytes) -> list[bytes]:
    """``sdssplitargs``: the arguments of an inline command; ProtocolError on unbalanced quotes."""
    end = line.find(b"\0")  # Redis reads the line as a C string
    text = line if end < 0 else line[:end]
    args: list[bytes] = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos] in _SPACE:
            pos += 1
        if pos >= size:
            return args
        current = bytearray()
        quote = 0
        while True:
            char = text[pos] if pos < size else 0
            following = text[pos + 1] if pos + 1 < size else 0
            if quote == ord('"'):
                if char == ord("\\") and following == ord("x") and pos + 3 < size and \
                        text[pos + 2] in _HEX and text[pos + 3] in _HEX:  # fmt: skip
                    current.append(int(text[pos + 2 : pos + 4], 16))
                    pos += 3
                elif char == ord("\\") and following:
                    pos += 1
                    current += _ESCAPES.get(following, bytes([following]))
                elif char == ord('"'):
                    if following and following not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    pos += 1
                    break
                elif not char:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(char)
            elif quote == ord("'"):
                if char == ord("\\") and following == ord("'"):
                    pos += 1
                    current.append(following)
                elif char == ord("'"):
                    if following and following not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    pos += 1
                    break
                elif not char:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(char)
            elif not char or char in b" \n\r\t":
                break
            elif char in (ord('"'), ord("'")):
                quote = char
            else:
                current.append(char)
            pos += 1
        args.append(bytes(current))


def count_line(buffer: bytes | bytearray, start: int, what: str) -> tuple[int, int] | None:
    """The number after ``*`` or ``$`` at ``start`` and where the next frame begins; None if incomplete."""
    end = buffer.find(b"\r", start + 1)
    if end < 0 or end + 2 > len(buffer):
        if len(buffer) - start > INLINE_MAX:
            raise ProtocolError(f"too big {what} count string")
        return None
    value = number(bytes(buffer[start + 1 : end]))
    if value is None:
        raise ProtocolError(f"invalid {what} length")
    return value, end + 2
