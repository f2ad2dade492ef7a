"""Replies to a session client never carry the stored password: a streaming, length-preserving mask.

Session protocols frame their data by length (a RESP bulk string, a Postgres message, an IMAP literal),
so a secret is replaced by as many ``*`` as it has bytes and the framing stays valid. The forms masked
are the service's ``SecretSet`` variants (raw, URL- and JSON-escaped, …), as for the proxy's scrubber;
forms made only of digits are left alone (they would hit counts and lengths all the time).

A secret split across reads is still caught: the mask holds back a tail that may be the start of one.
Held bytes must never wait for data that is not coming (a reply ending in ``…T`` with a password
starting with ``T`` would stall the client), so each protocol's frames say where a value ends; there
everything held goes out. A frame tracker also says which bytes are structure, never masked (message
headers, RESP lengths). Frames are cut as the tracker reads them: ``Frames.split`` returns segments.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import Protocol

from ..redaction import SecretSet, secret_variants

MASK, END, RAW = range(3)  # maskable (may continue), maskable and the value ends here, structure
Segment = tuple[bytes, int]


class Frames(Protocol):
    """Splits replies into segments. Frames that never rewrite bytes may also have ``advance(chunk)``:
    track ``chunk`` as ``split`` would, without building segments (the no-secret fast path)."""

    def split(self, chunk: bytes) -> list[Segment]: ...


class LineFrames:
    """IMAP and SMTP replies: every line is a value (no secret holds a line feed)."""

    def split(self, chunk: bytes) -> list[Segment]:
        end = chunk.rfind(b"\n") + 1
        if not end:
            return [(chunk, MASK)]
        return [(chunk[:end], END), (chunk[end:], MASK)] if end < len(chunk) else [(chunk, END)]

    def advance(self, chunk: bytes) -> None:
        return None  # lines carry no state across chunks


class PostgresFrames:
    """Backend messages: the type and length are structure; each payload is a value."""

    def __init__(self) -> None:
        self._header = b""
        self._left = 0

    def split(self, chunk: bytes) -> list[Segment]:
        out: list[Segment] = []
        pos = 0
        while pos < len(chunk):
            if self._left:
                take = min(self._left, len(chunk) - pos)
                self._left -= take
                out.append((chunk[pos : pos + take], MASK if self._left else END))
                pos += take
                continue
            take = min(5 - len(self._header), len(chunk) - pos)
            self._header += chunk[pos : pos + take]
            out.append((chunk[pos : pos + take], RAW))
            pos += take
            if len(self._header) == 5:
                self._left = max(0, struct.unpack("!I", self._header[1:])[0] - 4)
                self._header = b""
        return out

    def advance(self, chunk: bytes) -> None:
        pos, size = 0, len(chunk)
        while pos < size:
            if self._left:
                take = min(self._left, size - pos)
                self._left -= take
                pos += take
            elif not self._header and size - pos >= 5:  # a whole header in this chunk: the usual case
                self._left = max(0, int.from_bytes(chunk[pos + 1 : pos + 5], "big") - 4)
                pos += 5
            else:
                take = min(5 - len(self._header), size - pos)
                self._header += chunk[pos : pos + take]
                pos += take
                if len(self._header) == 5:
                    self._left = max(0, int.from_bytes(self._header[1:], "big") - 4)
                    self._header = b""


class _Core:
    """Masks the forms in maskable bytes, holding back only a tail that may grow into one."""

    def __init__(self, forms: Iterable[bytes]) -> None:
        kept = {f for f in forms if f and not f.isdigit() and b"\n" not in f}
        self.forms = tuple(sorted(kept, key=lambda f: (-len(f), f)))
        self._pattern = re.compile(b"|".join(map(re.escape, self.forms))) if self.forms else None
        self._starts = frozenset(f[0] for f in self.forms)
        self._longest = max((len(f) for f in self.forms), default=0)
        self.pending = b""
        self.hits = 0

    def _replace(self, match: re.Match[bytes]) -> bytes:
        self.hits += 1
        return b"*" * (match.end() - match.start())

    def hold(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` must wait: the longest that may grow into a form."""
        return self._tail(data) if self.forms else 0

    def _tail(self, data: bytes) -> int:
        size = len(data)
        for start in range(max(0, size - self._longest + 1), size):
            if data[start] in self._starts:
                tail = data[start:]
                if any(len(f) > len(tail) and f.startswith(tail) for f in self.forms):
                    return size - start
        return 0

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk if self.pending else chunk
        if self._pattern is None:
            return data
        hold = self._tail(data)
        safe_end, position, out = len(data) - hold, 0, []
        if any(form in data for form in self.forms):
            for match in self._pattern.finditer(data):
                if match.start() >= safe_end:  # may still grow into a longer form: wait for more
                    break
                out += (data[position : match.start()], self._replace(match))
                position = match.end()
        end = max(safe_end, position)
        out.append(data[position:end])
        self.pending = data[end:]
        return b"".join(out)

    def flush(self) -> bytes:
        data, self.pending = self.pending, b""
        if self._pattern is None or not data:
            return data
        return self._pattern.sub(self._replace, data)


class ReplyMask:
    """Upstream → client for one session: the frames decide what may be masked and when to flush."""

    def __init__(self, forms: Iterable[bytes], frames: Frames) -> None:
        self._core = _Core(forms)
        self._frames = frames
        self._advance = getattr(frames, "advance", None)  # absent where frames rewrite (Redis markers)

    @classmethod
    def of(cls, secrets: SecretSet, frames: Frames) -> ReplyMask:
        """The mask for a service's secret set (short values are left out, as the scrubber does)."""
        return cls(secret_variants(secrets.values), frames)

    def __repr__(self) -> str:
        return f"ReplyMask({len(self._core.forms)} forms)"

    @property
    def hits(self) -> int:
        return self._core.hits

    def feed(self, chunk: bytes) -> bytes:
        core, out = self._core, []
        clean = not core.pending and not any(form in chunk for form in core.forms)
        if clean and self._advance is not None and not core.hold(chunk):
            # Nothing to mask, no tail that could start a secret (a tail of the last value is a tail of
            # the chunk): as it came, the frames only keep count.
            self._advance(chunk)
            return chunk
        segments = self._frames.split(chunk)
        if clean:
            last, kind = segments[-1] if segments else (b"", RAW)
            if kind != MASK or not core.hold(last):  # nothing to mask, nothing to hold back
                return b"".join(segment for segment, _ in segments)
        for segment, kind in segments:
            if kind == RAW:
                out += (core.flush(), segment)
            else:
                out.append(core.feed(segment))
                if kind == END:
                    out.append(core.flush())
        return b"".join(out)

    def flush(self) -> bytes:
        return self._core.flush()
