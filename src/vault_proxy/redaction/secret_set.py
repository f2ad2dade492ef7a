"""Everything secret about one service, in one object: what scrubbing looks for and what errors mask.

A ``SecretSet`` is built from the service's stored secrets (credentials, cached OAuth tokens) plus
what an injector derived from them (URL-encoded forms, ``user:password`` pairs for basic auth) and,
per call, the values held in the service's cookie jar. The echo scrubber's patterns are derived
from it, and ``mask`` is the one way to take those values out of a text (log lines, error causes,
session replies). Nothing else writes its own ``.replace(secret, …)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .scrubber import Scrubber, secret_variants

MASK = b"***"
# Cookie values shorter than this are not treated as secrets: ``lang=en`` or ``theme=dark`` would be
# redacted from every page, while a session identifier is far longer.
MIN_COOKIE_SECRET_LEN = 8


class SecretSet:
    __slots__ = ("values", "basic_pairs", "_scrubber", "_widened")

    def __init__(self, values: Iterable[str] = (), basic_pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.values: tuple[str, ...] = tuple(dict.fromkeys(v for v in values if v))
        self.basic_pairs: tuple[tuple[str, str], ...] = tuple(basic_pairs)
        self._scrubber: Scrubber | None = None
        self._widened: tuple[tuple[str, ...], SecretSet] | None = None

    def __repr__(self) -> str:
        return f"SecretSet({len(self.values)} values)"

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for two sets holding the same secrets (used to reuse a compiled scrubber)."""
        return self.values, self.basic_pairs

    @property
    def scrubber(self) -> Scrubber:
        """The compiled matcher for every form of every value (built on first use)."""
        if self._scrubber is None:
            self._scrubber = Scrubber(secret_variants(self.values, self.basic_pairs))
        return self._scrubber

    def mask(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``***``."""
        return self.scrubber.scrub_text(text, MASK)[0] if self.values else text

    def mask_bytes(self, data: bytes) -> bytes:
        return self.scrubber.scrub(data, MASK)[0] if self.values else data

    def with_cookies(self, cookie_values: tuple[str, ...]) -> SecretSet:
        """This set plus the values a service's cookie jar holds now (remembered for the same values)."""
        extra = tuple(v for v in cookie_values if len(v) >= MIN_COOKIE_SECRET_LEN)
        if not extra:
            return self
        widened = self._widened
        if widened is not None and widened[0] == extra:
            return widened[1]
        result = SecretSet((*self.values, *extra), self.basic_pairs)
        self._widened = (extra, result)
        return result
