"""The IMAP session's client → server direction after the login, sans-I/O: no COMPRESS.

``COMPRESS DEFLATE`` (RFC 4978) would turn the rest of the connection into a deflate stream, which the
reply mask cannot read: the stored password could then come back unmasked. The command is rewritten
to name a mechanism no server has, so the server itself answers it with a tagged NO/BAD, in its place;
everything else passes unchanged. Commands are framed as IMAP frames them: a line, and after a line
ending in a literal marker (``{n}`` / ``{n+}``) that many bytes of data, then the rest of the command.
"""

from __future__ import annotations

import re

from .steps import Step

REFUSED_MECHANISM = b"X-VAULT-PROXY-REFUSED"
MAX_LINE = 64 * 1024  # longer lines pass through as they come (a command name is at their start)
_LITERAL = re.compile(rb"\{(\d{1,10})\+?\}\r?\n$")
# The tag, then COMPRESS as the command name whatever separates them or follows (a tab, a literal).
_COMPRESS = re.compile(rb"([^ \t\r\n]+)[ \t]+COMPRESS(?=[ \t{]|\r?\n$)", re.IGNORECASE)


class ImapFilter:
    logged_in = True  # the local handshake did the login

    def __init__(self) -> None:
        self._line = bytearray()  # the current line, until its end or MAX_LINE
        self._passing = False  # a long line: forwarded as it comes
        self._literal = 0  # literal bytes still to pass
        self._command_start = True  # the next line starts a command (not the rest of one after a literal)

    def feed(self, data: bytes) -> Step:
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._literal:
                take = min(self._literal, len(data) - pos)
                out.append(data[pos : pos + take])
                self._literal -= take
                pos += take
                continue
            end = data.find(b"\n", pos)
            piece = data[pos : len(data) if end < 0 else end + 1]
            pos += len(piece)
            if self._passing:
                out.append(piece)
                self._line = (self._line + piece)[-16:]  # enough to see a literal marker at the end
            else:
                self._line += piece
                if len(self._line) > MAX_LINE:
                    out.append(bytes(self._line))
                    self._passing, self._line = True, self._line[-16:]
            if end >= 0:
                out.append(self._end_of_line())
        return Step(b"".join(out))

    def _end_of_line(self) -> bytes:
        line, passing = bytes(self._line), self._passing
        self._line, self._passing = bytearray(), False
        literal = _LITERAL.search(line)
        starts = self._command_start
        self._command_start = literal is None
        if literal:
            self._literal = int(literal.group(1))
        if passing:
            return b""
        compress = _COMPRESS.match(line) if starts else None
        if compress:  # a literal after it stays framed as sent: the server then sees two arguments
            marker = b" " + literal.group(0).rstrip(b"\r\n") if literal else b""
            return compress.group(1) + b" COMPRESS " + REFUSED_MECHANISM + marker + b"\r\n"
        return line
