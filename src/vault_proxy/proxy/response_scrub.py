"""What of an upstream response head the caller may see: a secret-free reason phrase and headers."""

from __future__ import annotations

from http import HTTPStatus

from multidict import CIMultiDict

from ..redaction import Scrubber


def caller_reason(status: int, reason: str, scrubber: Scrubber) -> str:
    """The upstream's reason phrase, scrubbed; the standard phrase when it is not printable ASCII.

    A reason is free text the upstream chose (RFC 9112 §4: clients ignore it), so it is treated like a
    header value: a secret in it is redacted, and bytes that could not round-trip are not relayed.
    """
    if reason in _STANDARD_PHRASES:  # the usual case: nothing the upstream chose, nothing to scan
        return reason
    if not reason.isascii() or not reason.isprintable():
        return _standard(status)
    clean, _ = scrubber.scrub_text(reason)
    return clean


_STANDARD_PHRASES = frozenset(status.phrase for status in HTTPStatus)


def _standard(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def scrub_headers(headers: CIMultiDict[str], scrubber: Scrubber) -> int:
    """Scrub values in place; a header whose *name* holds a secret is dropped (no valid name remains).
    Returns the number of hits."""
    every = "\n".join([*headers.keys(), *headers.values()])
    if scrubber.first_hit(every.encode("utf-8", "surrogateescape")) < 0:
        return 0  # the usual case: one scan over all names and values
    kept: list[tuple[str, str]] = []
    total = 0
    for name, value in headers.items():
        _, name_hits = scrubber.scrub_text(name)
        clean, hits = scrubber.scrub_text(value)
        total += name_hits + hits
        if not name_hits:
            kept.append((name, clean))
    headers.clear()
    headers.extend(kept)
    return total
