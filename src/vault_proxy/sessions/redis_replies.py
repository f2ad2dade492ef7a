"""Redis replies as the reply mask reads them: RESP frames, and the vault's own answers put in place.

``RespFrames`` tells the mask which bytes are text that may hold a secret and where each value ends.
Only type bytes, line ends and bulk CRLFs are structure: every line (simple strings, errors, numbers,
aggregate and bulk headers) and every bulk payload is maskable, since a hostile server may put
anything after ``:`` or ``*`` (the mask leaves digit-only forms alone: real numbers stay as they are).
It also swaps ``Markers`` back: a command the filter answers locally went upstream as ``ECHO <marker>``;
when that marker's reply comes back, in its place among the other replies, the vault's answer replaces
it. Pipelines, MULTI/EXEC (the marker is queued like any command) and RESP3 keep their order; the
marker is random per session, so no client can forge one.
"""

from __future__ import annotations

import re
import secrets

from .masking import END, MASK, RAW, Segment
from .redis_wire import encode

_TEXT = frozenset(b"+-")
_BULK = frozenset(b"$!=")
_STRUCTURE = frozenset(b":,(#_*%~>|")
_MAX_HEADER = 32
# Every byte ``int`` may accept in a length: a header holding any other is text and goes out at once
# (held bytes reach the mask only with a later read, which it may take for one with nothing to mask).
_LENGTH_BYTES = frozenset(b" \t\n\x0b\x0c\r+-0123456789_")
_MAX_MARKERS = 10_000
_HEX8 = re.compile(rb"[0-9a-f]{8}")
_HEX8_CHARS = frozenset(b"0123456789abcdef")


class Markers:
    """Local Redis answers waiting for their place in the reply stream."""

    def __init__(self, nonce: bytes | None = None) -> None:
        self._nonce = nonce or secrets.token_hex(12).encode()  # 24 lower-case hex characters
        self._next = 0
        self._pending: dict[int, bytes] = {}
        self.size = len(self._nonce) + 8  # the ECHO argument's length

    def command(self, reply: bytes) -> bytes:
        """The command to send upstream instead of a refused one; ``reply`` takes its answer's place."""
        number = self._next
        self._next = (self._next + 1) % 2**32
        self._pending[number] = reply
        if len(self._pending) > _MAX_MARKERS:  # answers that never came (CLIENT REPLY OFF): forget the oldest
            self._pending.pop(next(iter(self._pending)))
        return encode(b"ECHO", self._nonce + b"%08x" % number)

    def may_be(self, start: bytes) -> bool:
        """Whether a bulk payload beginning with ``start`` may still be one of our markers."""
        nonce = self._nonce[: len(start)]
        return start.startswith(nonce) and _HEX8_CHARS.issuperset(start[len(nonce) :])

    def answer(self, payload: bytes) -> bytes | None:
        """The local answer for a bulk payload that is one of our markers, else None."""
        if len(payload) != self.size or not payload.startswith(self._nonce):
            return None
        digits = payload[len(self._nonce) :]
        if not _HEX8.fullmatch(digits):
            return None
        return self._pending.pop(int(digits, 16), None)


class RespFrames:
    """Reply frames of one Redis connection (RESP2 and RESP3)."""

    def __init__(self, markers: Markers | None = None) -> None:
        self._markers = markers
        self._state = "start"  # start | text | structure | header | bulk | marker | crlf
        self._header = b""
        self._sent = 0  # header bytes already given to the mask
        self._left = 0  # payload bytes (bulk), or payload + CRLF (marker), or CRLF bytes still to come
        self._held = b""  # a possible marker: header and payload, until it is complete

    def split(self, chunk: bytes) -> list[Segment]:
        out: list[Segment] = []
        pos, size = 0, len(chunk)
        while pos < size:
            state = self._state
            if state == "start":
                kind = chunk[pos]
                if kind in _BULK:
                    self._state, self._header, self._sent = "header", b"", 0
                    continue
                self._state = "structure" if kind in _STRUCTURE else "text"
                out.append((chunk[pos : pos + 1], RAW if kind in _STRUCTURE or kind in _TEXT else MASK))
                pos += 1
            elif state in ("text", "structure"):
                end = chunk.find(b"\n", pos)
                stop = size if end < 0 else end
                if stop > pos:  # structure lines are masked too: a ``:`` or ``*`` line need not be a number
                    out.append((chunk[pos:stop], END if end >= 0 else MASK))
                if end >= 0:
                    out.append((b"\n", RAW))
                    self._state = "start"
                pos = stop + 1 if end >= 0 else size
            elif state == "header":
                end = chunk.find(b"\n", pos)
                self._header += chunk[pos : size if end < 0 else end + 1]
                pos = size if end < 0 else end + 1
                if end < 0 and len(self._header) <= _MAX_HEADER and _LENGTH_BYTES.issuperset(self._header[1:]):
                    if not self._may_be_marker_header():  # give what came to the mask now (see below)
                        out.extend(_as_text(self._header, self._sent))
                        self._sent = len(self._header)
                    continue  # may still be a length: wait for the line end
                out.extend(self._after_header())
            elif state in ("bulk", "crlf"):
                take = min(self._left, size - pos)
                self._left -= take
                done = not self._left
                if state == "bulk":
                    out.append((chunk[pos : pos + take], END if done else MASK))
                    self._state, self._left = ("crlf", 2) if done else ("bulk", self._left)
                else:
                    out.append((chunk[pos : pos + take], RAW))
                    self._state = "start" if done else "crlf"
                pos += take
            else:  # marker
                take = min(self._left, size - pos)
                self._held += chunk[pos : pos + take]
                self._left -= take
                pos += take
                if not self._left:
                    out.extend(self._after_marker())
                else:
                    out.extend(self._not_a_marker())
        return out

    def _after_header(self) -> list[Segment]:
        header, self._header = self._header, b""
        try:
            length = int(header[1:].rstrip(b"\r\n")) if header.endswith(b"\n") else -1
        except ValueError:
            length = -1
        if length < 0:  # a null bulk, or not a length we understand: a line as text, then the next value
            self._state = "start" if header.endswith(b"\n") else "text"
            return _as_text(header, self._sent)
        if self._markers is not None and header[:1] == b"$" and length == self._markers.size and not self._sent:
            self._state, self._left, self._held = "marker", length + 2, header
            return []
        self._state, self._left = ("bulk", length) if length else ("crlf", 2)
        return _as_text(header, self._sent)  # ``int`` also reads `` 1_0``: the mask, not the parse, decides

    def _may_be_marker_header(self) -> bool:
        """Whether the header so far may still become ``$<marker size>`` (held until it is complete)."""
        if self._markers is None:
            return False
        return (b"$%d\r\n" % self._markers.size).startswith(self._header)

    def _not_a_marker(self) -> list[Segment]:
        """A held bulk that can no longer be a marker goes on as a bulk now: held bytes that reach the
        mask only with a later read could be taken for bytes with nothing to mask."""
        assert self._markers is not None
        header_end = self._held.index(b"\n") + 1
        size = self._markers.size
        payload, crlf = self._held[header_end : header_end + size], self._held[header_end + size :]
        if self._markers.may_be(payload):
            return []
        out: list[Segment] = [(self._held[:header_end], RAW)]
        self._held = b""
        if len(payload) < size:
            self._state, self._left = "bulk", self._left - 2
            return [*out, (payload, MASK)] if payload else out
        self._state = "crlf"  # self._left: the CRLF bytes still to come
        return [*out, (payload, END), (crlf, RAW)] if crlf else [*out, (payload, END)]

    def _after_marker(self) -> list[Segment]:
        held, self._held = self._held, b""
        self._state = "start"
        header_end = held.index(b"\n") + 1
        payload = held[header_end:-2]
        answer = self._markers.answer(payload) if self._markers is not None else None
        if answer is not None:
            return [(answer, RAW)]
        return [(held[:header_end], RAW), (payload, END), (held[-2:], RAW)]


def _as_text(header: bytes, sent: int = 0) -> list[Segment]:
    """A bulk header's bytes from ``sent`` on as maskable text (its type byte and line end are structure).

    Header bytes are given to the mask as they come: bytes held here would reach it only with a later
    read, which the mask may take for one with nothing to mask."""
    out: list[Segment] = [(header[:1], RAW)] if not sent else []
    body = header[max(sent, 1) :]
    if header.endswith(b"\n"):
        return [*out, (body[:-1], END), (b"\n", RAW)] if len(body) > 1 else [*out, (body, RAW)]
    return [*out, (body, MASK)] if body else out
