"""Secret echo scrubbing: a credential the upstream sends back is replaced before the caller sees it.

Some APIs reflect request headers (debug endpoints, error pages). The vault injected the credential,
so it must not let it out: every form it may come back in is replaced by ``[REDACTED]``, in headers
and bodies, across chunk boundaries, and inside gzip/deflate/brotli bodies.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import quote, quote_plus

import brotli

REDACTED = b"[REDACTED]"
# Shorter secrets would match ordinary text all the time; validation keeps real credentials longer.
MIN_SECRET_LEN = 4
SCANNABLE_ACCEPT_ENCODING = "gzip, deflate, br"
# Decompressed output is produced in pieces of at most this size (a compression bomb stays bounded).
_PIECE = 1024 * 1024


def secret_variants(secrets: Iterable[str], basic_pairs: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """Every byte form a secret may come back in: raw, URL-encoded, JSON-escaped, basic-auth base64."""
    forms: set[bytes] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET_LEN:
            continue
        for text in (
            secret,
            quote(secret, safe=""),
            quote_plus(secret),
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        ):
            forms.add(text.encode("utf-8"))
    for user, password in basic_pairs:
        raw = f"{user}:{password}".encode()
        forms.update((base64.b64encode(raw), base64.urlsafe_b64encode(raw)))
        forms.update(form.rstrip(b"=") for form in list(forms) if form.endswith(b"="))
    return sorted((f for f in forms if len(f) >= MIN_SECRET_LEN), key=lambda f: (-len(f), f))


class Scrubber:
    """Finds and replaces a fixed set of byte strings; disabled (zero cost) when the set is empty."""

    def __init__(self, variants: Sequence[bytes]) -> None:
        self.variants = tuple(sorted(set(variants), key=lambda f: (-len(f), f)))
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self.variants)) if self.variants else None
        self._prefixes = frozenset(v[:k] for v in self.variants for k in range(1, len(v)))
        self._first_bytes = frozenset(v[0] for v in self.variants)
        self._longest = max((len(v) for v in self.variants), default=0)

    def __repr__(self) -> str:
        return f"Scrubber({len(self.variants)} variants)"

    @property
    def enabled(self) -> bool:
        return self._pattern is not None

    def scrub(self, data: bytes) -> tuple[bytes, int]:
        if self._pattern is None:
            return data, 0
        return self._pattern.subn(REDACTED, data)

    def scrub_text(self, text: str) -> tuple[str, int]:
        """For header values; surrogateescape keeps any byte sequence intact."""
        if self._pattern is None:
            return text, 0
        clean, hits = self.scrub(text.encode("utf-8", "surrogateescape"))
        return (clean.decode("utf-8", "surrogateescape"), hits) if hits else (text, 0)

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    def partial_tail(self, data: bytes) -> int:
        """Length of the longest suffix of ``data`` that is a proper prefix of a variant (0 if none)."""
        first, prefixes = self._first_bytes, self._prefixes
        for k in range(min(self._longest - 1, len(data)), 0, -1):
            if data[-k] in first and data[-k:] in prefixes:
                return k
        return 0


class StreamScrubber:
    """Scrubs a body chunk by chunk, holding back only bytes that may start a secret.

    Holding back just that tail (not a fixed window) means an SSE event that ends a chunk goes out at
    once, while a secret split across any number of chunks is still caught.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self._pending = b""
        self.hits = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        pattern = self._scrubber._pattern
        if pattern is None:
            return data
        safe_end = len(data) - self._scrubber.partial_tail(data)
        out: list[bytes] = []
        position = 0
        for match in pattern.finditer(data):
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
        data, self._pending = self._pending, b""
        clean, hits = self._scrubber.scrub(data)
        self.hits += hits
        return clean


class UnsupportedEncoding(ValueError):
    pass


class _Zlib:
    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits  # None: deflate, zlib-wrapped or raw, decided by the first bytes
        self._obj = zlib.decompressobj(wbits) if wbits is not None else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._obj is None:
            if not data:
                return
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        piece = self._obj.decompress(data, _PIECE)
        while piece:
            yield piece
            piece = self._obj.decompress(self._obj.unconsumed_tail, _PIECE) if self._obj.unconsumed_tail else b""

    def flush(self) -> Iterator[bytes]:
        if self._obj is not None and (rest := self._obj.flush()):
            yield rest


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        piece = self._obj.process(data, output_buffer_limit=_PIECE)
        while piece:
            yield piece
            piece = b"" if self._obj.can_accept_more_data() else self._obj.process(b"", output_buffer_limit=_PIECE)

    def flush(self) -> Iterator[bytes]:
        return iter(())


_DECODERS = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": lambda: _Zlib(None),
    "br": _Brotli,
}


class BodyDecoder:
    """Incremental ``Content-Encoding`` decoding (chains like ``gzip, br`` undone in reverse order)."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
        unknown = [c for c in codings if c not in _DECODERS]
        if unknown:
            raise UnsupportedEncoding(f"cannot decode content-encoding {unknown[0]!r}")
        self._stages = [_DECODERS[c]() for c in reversed(codings)]

    @staticmethod
    def supports(content_encoding: str) -> bool:
        codings = (c.strip().lower() for c in content_encoding.split(","))
        return all(c in _DECODERS or c in ("", "identity") for c in codings)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        return self._through(0, [chunk], final=False)

    def flush(self) -> Iterator[bytes]:
        return self._through(0, [], final=True)

    def _through(self, index: int, pieces: Iterable[bytes], *, final: bool) -> Iterator[bytes]:
        if index == len(self._stages):
            yield from (p for p in pieces if p)
            return
        stage = self._stages[index]

        def produced() -> Iterator[bytes]:
            for piece in pieces:
                yield from stage.feed(piece)
            if final:
                yield from stage.flush()

        yield from self._through(index + 1, produced(), final=final)
