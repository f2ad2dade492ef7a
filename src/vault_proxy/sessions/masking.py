"""Replies to a session client never carry the stored password: a streaming, length-preserving mask.

Session protocols frame their data by length (a RESP bulk string, a Postgres DataRow, an IMAP literal),
so a secret is replaced by as many ``*`` as it has bytes and the framing stays valid. The mask works
across chunk boundaries: it holds back only a tail that may be the start of a secret. Redis sessions
also use it to put the vault's own replies in their place in the reply stream (see ``Markers``).

The forms masked are the service's ``SecretSet`` variants (raw, URL- and JSON-escaped, …), the same
list the proxy's echo scrubber uses; only the replacement differs (same length, for the framing).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from ..redaction import SecretSet, secret_variants
from .redis_wire import encode

_HEX = frozenset(b"0123456789abcdef")
_MAX_MARKERS = 10_000


class Markers:
    """Local Redis replies kept in order: a refused command goes upstream as ``ECHO <marker>``, and the
    marker's reply, when it comes back in its place, is swapped for the vault's answer. Pipelines,
    MULTI/EXEC and RESP3 keep their order; the marker is random per session, so no client can forge it."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(12).encode()
        self._next = 0
        self._pending: dict[int, bytes] = {}
        body = len(self._nonce) + 8
        self.head = b"$%d\r\n" % body + self._nonce
        self.size = len(self.head) + 8 + 2
        self.pattern = re.escape(self.head) + rb"([0-9a-f]{8})\r\n"

    def command(self, reply: bytes) -> bytes:
        """The command to send upstream instead of a refused one; ``reply`` takes its answer's place."""
        number = self._next
        self._next = (self._next + 1) % 2**32
        self._pending[number] = reply
        if len(self._pending) > _MAX_MARKERS:  # answers that never came (CLIENT REPLY OFF): forget the oldest
            self._pending.pop(next(iter(self._pending)))
        return encode(b"ECHO", self._nonce + b"%08x" % number)

    def answer(self, digits: bytes, original: bytes) -> bytes:
        return self._pending.pop(int(digits, 16), original)

    def is_prefix(self, tail: bytes) -> bool:
        """Whether ``tail`` may be the start of a marker reply (still shorter than a whole one)."""
        if len(tail) >= self.size:
            return False
        head = self.head
        if len(tail) <= len(head):
            return head.startswith(tail)
        rest = tail[len(head) :]
        return tail.startswith(head) and all(b in _HEX for b in rest[:8]) and b"\r\n".startswith(rest[8:])


class ReplyMask:
    """Masks every stored secret in a byte stream (``*`` of the same length); swaps Redis markers."""

    def __init__(self, forms: Iterable[bytes], markers: Markers | None = None) -> None:
        self._secrets = tuple(sorted(set(forms), key=lambda f: (-len(f), f)))
        self._markers = markers
        alternatives = [re.escape(s) for s in self._secrets]
        if markers is not None:
            alternatives.insert(0, markers.pattern)
        self._pattern = re.compile(b"|".join(alternatives)) if alternatives else None
        self._needles = self._secrets + ((markers.head[-8:],) if markers else ())
        self._starts = frozenset(s[0] for s in self._secrets) | ({ord("$")} if markers else set())
        self._longest = max([len(s) for s in self._secrets] + ([markers.size] if markers else []), default=0)
        self._pending = b""
        self.hits = 0

    @classmethod
    def of(cls, secrets: SecretSet, markers: Markers | None = None) -> ReplyMask:
        """The mask for a service's secret set (short values are left out, as the scrubber does)."""
        return cls(secret_variants(secrets.values), markers)

    def __repr__(self) -> str:
        return f"ReplyMask({len(self._secrets)} forms)"

    def _replacement(self, match: re.Match[bytes]) -> bytes:
        if match.lastindex and self._markers is not None:
            return self._markers.answer(match.group(1), match.group(0))
        self.hits += 1
        return b"*" * (match.end() - match.start())

    def _tail(self, data: bytes) -> int:
        """Length of the longest suffix of ``data`` that may still grow into a secret or a marker."""
        size = len(data)
        for start in range(max(0, size - self._longest + 1), size):
            if data[start] not in self._starts:
                continue
            tail = data[start:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self._secrets):
                return size - start
            if self._markers is not None and self._markers.is_prefix(tail):
                return size - start
        return 0

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        if self._pattern is None:
            return data
        hold = self._tail(data)
        if not any(needle in data for needle in self._needles):
            self._pending = data[len(data) - hold :] if hold else b""
            return data[: len(data) - hold] if hold else data
        safe_end, position, out = len(data) - hold, 0, []
        for match in self._pattern.finditer(data):
            if match.start() >= safe_end:  # may still grow into a longer secret: wait for more
                break
            out += (data[position : match.start()], self._replacement(match))
            position = match.end()
        end = max(safe_end, position)
        out.append(data[position:end])
        self._pending = data[end:]
        return b"".join(out)

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        if self._pattern is None or not data:
            return data
        return self._pattern.sub(self._replacement, data)
