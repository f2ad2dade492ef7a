"""Undoing ``Content-Encoding`` (and transfer codings other than chunked) so a body can be scanned."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import brotli

SCANNABLE_ACCEPT_ENCODING = "gzip, deflate, br"
# Decompressed output comes in pieces of at most this size, so a compression bomb stays bounded.
_PIECE = 256 * 1024


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` the vault cannot decode, so cannot scan."""


class _Zlib:
    """gzip (multi-member) or deflate; deflate may be zlib-wrapped or raw, decided by the first bytes."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._obj is None:
            data, self._head = self._head + data, b""
            if len(data) < 2:
                self._head = data
                return
            cmf, flg = data[0], data[1]
            wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        obj = self._obj
        while data:
            piece = obj.decompress(data, _PIECE)
            while piece:
                yield piece
                # A full piece may leave input (unconsumed_tail) or output still inside zlib.
                piece = obj.decompress(obj.unconsumed_tail, _PIECE) if len(piece) == _PIECE else b""
            data = b""
            if self._gzip and obj.eof and obj.unused_data:  # another gzip member follows
                data, obj = obj.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._obj = obj

    def flush(self) -> Iterator[bytes]:
        if self._obj is None:  # fewer than two bytes in all: not valid deflate, let zlib say so
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            yield from self.feed(self._head)
        if rest := self._obj.flush():
            yield rest


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        piece = self._obj.process(data, output_buffer_limit=_PIECE)
        while piece:  # drain: output may still be pending even once all input is consumed
            yield piece
            piece = self._obj.process(b"", output_buffer_limit=_PIECE)

    def flush(self) -> Iterator[bytes]:
        return iter(())


_DECODERS: dict[str, Callable[[], _Zlib | _Brotli]] = {
    "gzip": lambda: _Zlib(gzip=True),
    "x-gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "br": _Brotli,
}


def body_codings(headers: Mapping[str, str]) -> str:
    """Every coding applied to a response body, in the order applied, as one list.

    All ``Content-Encoding`` headers count (a second one must not hide a coding behind an
    ``identity``), then the transfer codings other than ``chunked`` (the HTTP parser undoes chunked
    only; ``Transfer-Encoding: gzip, chunked`` leaves a gzip body). ``''`` when the body is as sent.
    """
    encodings = headers.getall("Content-Encoding", ())  # type: ignore[attr-defined]
    transfer = headers.get("Transfer-Encoding")
    if not encodings and (transfer is None or transfer.lower() == "chunked"):
        return ""  # the usual case, decided in two lookups
    codings = [c for value in encodings for c in _codings(value)]
    if transfer is not None:
        transfer = [c for value in headers.getall("Transfer-Encoding", ()) for c in _codings(value)]  # type: ignore[attr-defined]
        codings += [c for c in transfer if c != "chunked"]
    return ", ".join(codings)


def _codings(content_encoding: str) -> list[str]:
    codings = (c.strip().lower() for c in content_encoding.split(","))
    return [c for c in codings if c not in ("", "identity")]


class BodyDecoder:
    """Incremental ``Content-Encoding`` decoding (a chain like ``gzip, br`` is undone in reverse order).

    ``feed`` and ``flush`` yield decoded pieces of bounded size rather than one bytes object, so a
    small compressed chunk that expands hugely never sits in memory whole.
    """

    def __init__(self, content_encoding: str) -> None:
        codings = _codings(content_encoding)
        unknown = [c for c in codings if c not in _DECODERS]
        if unknown:
            raise UnsupportedEncoding(f"cannot decode content-encoding {unknown[0]!r}")
        self._stages = [_DECODERS[c]() for c in reversed(codings)]

    @staticmethod
    def supports(content_encoding: str) -> bool:
        return all(c in _DECODERS for c in _codings(content_encoding))

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        return self._through(0, (chunk,), final=False)

    def flush(self) -> Iterator[bytes]:
        return self._through(0, (), final=True)

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
