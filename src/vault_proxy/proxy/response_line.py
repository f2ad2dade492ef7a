"""The status line the caller gets: the upstream's reason phrase only when it is plain and secret-free."""

from __future__ import annotations

from http import HTTPStatus

from ..redaction import Scrubber


def caller_reason(status: int, reason: str, scrubber: Scrubber) -> str:
    """The upstream's reason phrase, scrubbed; the standard phrase when it is not printable ASCII.

    A reason is free text the upstream chose (RFC 9112 §4: clients ignore it), so it is treated like a
    header value: a secret in it is redacted, and bytes that could not round-trip are not relayed.
    """
    if not reason.isascii() or not reason.isprintable():
        return _standard(status)
    clean, _ = scrubber.scrub_text(reason)
    return clean


def _standard(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
