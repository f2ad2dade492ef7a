"""Redis replies as the reply mask reads them: RESP frames, and the vault's own answers put in place.

``RespFrames`` tells the mask which bytes are text that may hold a secret (simple strings and errors,
the payload of bulk strings, bulk errors and verbatim strings) and which are structure (types, lengths,
numbers, aggregate headers), and where each value ends. It also swaps ``Markers`` back: a command the
filter answers locally went upstream as ``ECHO <marker>``; when that marker's reply comes back, in its
place among the other replies, the vault's answer replaces it. Pipelines, MULTI/EXEC (the marker is
queued like any command) and RESP3 keep their order; the marker is random per session, so no client
can forge one.
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
_MAX_MARKERS = 10_000
_HEX8 = re.compile(rb"[0-9a-f]{8}")


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
                    self._state, self._header = "header", b""
                    continue
                self._state = "structure" if kind in _STRUCTURE else "text"
                out.append((chunk[pos : pos + 1], RAW if kind in _STRUCTURE or kind in _TEXT else MASK))
                pos += 1
            elif state in ("text", "structure"):
                end = chunk.find(b"\n", pos)
                stop = size if end < 0 else end
                if stop > pos:
                    out.append((chunk[pos:stop], RAW if state == "structure" else (END if end >= 0 else MASK)))
                if end >= 0:
                    out.append((b"\n", RAW))
                    self._state = "start"
                pos = stop + 1 if end >= 0 else size
            elif state == "header":
                end = chunk.find(b"\n", pos)
                self._header += chunk[pos : size if end < 0 else end + 1]
                pos = size if end < 0 else end + 1
                if end < 0 and len(self._header) <= _MAX_HEADER:
                    continue
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
        return out

    def _after_header(self) -> list[Segment]:
        header, self._header = self._header, b""
        try:
            length = int(header[1:].rstrip(b"\r\n")) if header.endswith(b"\n") else -1
        except ValueError:
            length = -1
        if length < 0:  # a null bulk, or not a length we understand: structure, then the next value
            self._state = "start" if header.endswith(b"\n") else "text"
            return [(header, RAW)]
        if self._markers is not None and header[:1] == b"$" and length == self._markers.size:
            self._state, self._left, self._held = "marker", length + 2, header
            return []
        self._state, self._left = ("bulk", length) if length else ("crlf", 2)
        return [(header, RAW)]

    def _after_marker(self) -> list[Segment]:
        held, self._held = self._held, b""
        self._state = "start"
        header_end = held.index(b"\n") + 1
        payload = held[header_end:-2]
        answer = self._markers.answer(payload) if self._markers is not None else None
        if answer is not None:
            return [(answer, RAW)]
        return [(held[:header_end], RAW), (payload, END), (held[-2:], RAW)]
