"""Finding and replacing a fixed set of secret strings, in whole values and in streams.

Some APIs reflect request headers (debug endpoints, error pages). The vault injected the credential,
so it must not let it out: every form it may come back in is replaced by ``[REDACTED]``, in headers
and bodies, across chunk boundaries (compressed bodies are decoded first: proxy/decoding.py).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, quote_plus

REDACTED = b"[REDACTED]"
# Secrets shorter than this are ignored: they would match ordinary text all the time (and real
# credentials are far longer). Every variant shorter than this is dropped too.
MIN_SECRET_LEN = 4
# Held-back tails shorter than this are looked up in a prefix set; longer ones are compared directly.
_SHORT = 64


def _by_length(forms: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(sorted(set(forms), key=lambda f: (-len(f), f)))


def secret_variants(secrets: Iterable[str], basic_pairs: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """Every byte form a secret may come back in, longest first.

    Raw UTF-8, URL-encoded (``quote`` with and without ``/`` kept, ``quote_plus``), JSON-escaped
    (ASCII-only, UTF-8, and with ``\\/``), and for each basic pair the standard and URL-safe base64
    of ``user:password``, padded and unpadded. Secrets shorter than ``MIN_SECRET_LEN`` are ignored.
    """
    pairs = list(basic_pairs)
    forms: set[bytes] = set()
    for secret in [*secrets, *(password for _, password in pairs)]:
        if len(secret) < MIN_SECRET_LEN:
            continue
        escaped = json.dumps(secret)[1:-1]
        for text in (
            secret,
            quote(secret, safe=""),
            quote(secret),
            quote_plus(secret),
            escaped,
            escaped.replace("/", "\\/"),
            json.dumps(secret, ensure_ascii=False)[1:-1],
        ):
            forms.add(text.encode("utf-8", "surrogatepass"))
    for user, password in pairs:
        raw = f"{user}:{password}".encode("utf-8", "surrogatepass")
        if len(raw) < MIN_SECRET_LEN:
            continue
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            forms.update((encoded, encoded.rstrip(b"=")))
    return list(_by_length(f for f in forms if len(f) >= MIN_SECRET_LEN))


class Scrubber:
    """Finds and replaces a fixed set of byte strings (leftmost, longest); zero cost when the set is empty.

    A chunk without any secret costs one ``bytes.find`` per needle (fast substring search, far quicker
    than a regex scan); the regex runs only from just before the first possible hit.
    """

    def __init__(self, variants: Sequence[bytes]) -> None:
        self.variants = _by_length(v for v in variants if v)
        self._pattern = re.compile(b"|".join(map(re.escape, self.variants))) if self.variants else None
        self._longest = len(self.variants[0]) if self.variants else 0
        # Every occurrence of a variant contains an occurrence of a needle (a variant holding no other).
        self._needles = tuple(v for v in self.variants if not any(w != v and w in v for w in self.variants))
        # For the held-back tail: where a variant could start, the bytes it could end on, and its prefixes
        # (a set for short ones; long secrets such as PEM keys are compared directly to stay small).
        firsts = b"".join(b"\\x%02x" % b for b in {v[0] for v in self.variants})
        self._starts = re.compile(b"[%s]" % firsts if firsts else b"(?!)")
        self._inner_bytes = frozenset(b for v in self.variants for b in v[:-1])
        self._short_prefixes = frozenset(v[:k] for v in self.variants for k in range(1, min(len(v), _SHORT)))
        self._long: dict[int, list[bytes]] = {}
        for v in self.variants:
            if len(v) > _SHORT:
                self._long.setdefault(v[0], []).append(v)

    def __repr__(self) -> str:
        return f"Scrubber({len(self.variants)} variants)"

    @property
    def enabled(self) -> bool:
        return self._pattern is not None

    def scrub(self, data: bytes, replacement: bytes = REDACTED) -> tuple[bytes, int]:
        """Replace every variant in a whole value; returns the clean bytes and the number of hits."""
        start = self.first_hit(data)
        if start < 0:
            return data, 0
        assert self._pattern is not None
        clean, hits = self._pattern.subn(replacement, data[start:])
        return data[:start] + clean, hits

    def scrub_text(self, text: str, replacement: bytes = REDACTED) -> tuple[str, int]:
        """For header names and values, reasons, messages: UTF-8 with surrogateescape round-trips
        whatever bytes the HTTP parser decoded."""
        if self._pattern is None:
            return text, 0
        clean, hits = self.scrub(text.encode("utf-8", "surrogateescape"), replacement)
        return (clean.decode("utf-8", "surrogateescape"), hits) if hits else (text, 0)

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    def first_hit(self, data: bytes) -> int:
        """A position at or before the first variant in ``data`` (-1 when there is none)."""
        if self._pattern is None:
            return -1
        best = -1
        for needle in self._needles:
            found = data.find(needle) if best < 0 else data.find(needle, 0, best + len(needle) - 1)
            if found >= 0:
                best = found
        # A needle may sit inside a longer variant that starts up to longest-1 bytes earlier.
        return best if best < 0 else max(0, best - self._longest + 1)

    def partial_tail(self, data: bytes) -> int:
        """Length of the longest suffix of ``data`` that is a proper prefix of a variant (0 if none)."""
        if not data or data[-1] not in self._inner_bytes:
            return 0  # e.g. an SSE event ending in a newline: nothing to hold back
        size = len(data)
        for start in self._starts.finditer(data, max(0, size - self._longest + 1)):
            tail = data[start.start() :]  # leftmost candidate first: the longest tail wins
            if len(tail) < _SHORT:
                if tail in self._short_prefixes:
                    return len(tail)
            elif any(len(v) > len(tail) and v.startswith(tail) for v in self._long.get(tail[0], ())):
                return len(tail)
        return 0


class StreamScrubber:
    """Scrubs a body chunk by chunk, holding back only bytes that may start a secret.

    Holding back just that tail (not a fixed window) means an SSE event that ends a chunk goes out at
    once, while a secret split across any number of chunks is still caught. The concatenated output
    equals ``Scrubber.scrub`` of the whole body.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self._pending = b""
        self.hits = 0

    def feed(self, chunk: bytes) -> bytes:
        """Scrub and return what is safe to emit now."""
        data = self._pending + chunk if self._pending else chunk
        scrubber = self._scrubber
        pattern = scrubber._pattern
        if pattern is None:
            return data
        safe_end = len(data) - scrubber.partial_tail(data)
        start = scrubber.first_hit(data)
        if start < 0 or start >= safe_end:
            self._pending = data[safe_end:]
            return data[:safe_end] if self._pending else data
        out = [data[:start]]
        position = start
        for match in pattern.finditer(data, start):
            # A match that starts in the held-back tail might grow into a longer variant: wait.
            if match.start() >= safe_end:
                break
            out += (data[position : match.start()], REDACTED)
            position = match.end()
            self.hits += 1
        end = max(safe_end, position)
        out.append(data[position:end])
        self._pending = data[end:]
        return b"".join(out)

    def flush(self) -> bytes:
        """End of stream: the held-back tail, scrubbed."""
        data, self._pending = self._pending, b""
        clean, hits = self._scrubber.scrub(data)
        self.hits += hits
        return clean
