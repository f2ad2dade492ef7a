"""The destination rule (SPEC §9): where a call may go is decided by the service, never by the caller.

A service's ``base_url`` fixes the origin (scheme, host, port). The caller only supplies an
origin-form tail (``/path?query``) that is joined under the base path at a ``/`` boundary, with dot
segments resolved (``%2e`` forms too, as upstream servers decode them) and never allowed to climb
above the base path. The outbound layer dials ``Destination.origin`` and sends ``Destination.target``:
there is no field through which a caller's input could name another host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple
from urllib.parse import unquote

from yarl import URL

DEFAULT_PORTS = {"http": 80, "https": 443}
# After percent-decoding one segment: a separator (as some servers treat '\' too) or a ';' (Tomcat
# and Spring read '..;x' as '..') next to a dot part.
_SEPARATORS = re.compile(r"[/\\;]")


class DestinationRefused(ValueError):
    """The caller's request target cannot be mapped under the service's base URL (a 400)."""


class Origin(NamedTuple):
    """scheme, host (lower-case; IPv6 without brackets) and port. A tuple, so that hashing it (the
    upstream pool keys on it several times per call) stays in C."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str | URL) -> Origin:
        parsed = url if isinstance(url, URL) else URL(url, encoded=True)
        scheme = (parsed.scheme or "").lower()
        if scheme not in DEFAULT_PORTS or not parsed.raw_host:
            raise DestinationRefused(f"not an http(s) URL with a host: {parsed.scheme}://…")
        return cls(scheme, parsed.raw_host.lower(), parsed.explicit_port or DEFAULT_PORTS[scheme])

    @property
    def authority(self) -> str:
        """``host[:port]`` as the ``Host`` header carries it (the port only when not the default)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == DEFAULT_PORTS[self.scheme] else f"{shown}:{self.port}"

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{shown}:{self.port}"


@dataclass(frozen=True)
class Destination:
    """One upstream request's where: the service's origin and an origin-form target under its base path."""

    origin: Origin
    target: str  # always starts with '/'

    def __post_init__(self) -> None:
        if not self.target.startswith("/"):
            raise DestinationRefused("the upstream request target must be origin-form")

    @cached_property
    def request_line_tail(self) -> str:
        """What follows the method in the request head: `` target HTTP/1.1`` and the ``Host`` line."""
        return f" {self.target} HTTP/1.1\r\nHost: {self.origin.authority}\r\n"

    @cached_property
    def origin_text(self) -> str:
        """``scheme://host:port``, as the audit line records the origin dialled."""
        return str(self.origin)

    @cached_property
    def url(self) -> URL:
        """The absolute URL (for Location rewriting and cookie matching; never used to dial)."""
        return URL(f"{self.origin.scheme}://{self.origin.authority}{self.target}", encoded=True)


def resolve(base_url: str, tail: str) -> Destination:
    """``base_url`` joined with the caller's ``tail`` (what follows ``/proxy/{service}``, query included).

    The caller's encoding is kept (``%2F``, ``%3F`` stay encoded); a fragment is dropped, as no
    request target carries one. Raises :class:`DestinationRefused` for anything that is not an
    origin-form tail or that would leave the base path.
    """
    base = URL(base_url, encoded=True)
    origin = Origin.of(base)
    tail = tail.partition("#")[0]
    if tail and tail[0] not in "/?":
        raise DestinationRefused("request target must be a path (origin-form)")
    tail_path, has_query, tail_query = tail.partition("?")
    base_path = base.raw_path or "/"
    path = base_path.rstrip("/") + normalise_tail(tail_path) if tail_path else base_path
    query = "&".join(part for part in (base.raw_query_string, tail_query) if part)
    return Destination(origin, f"{path}?{query}" if query else path)


def normalise_tail(path: str) -> str:
    """Dot segments removed from an absolute path that is read relative to the base path.

    ``.``/``..`` (in any percent-encoded form) are resolved; a ``..`` with nothing left to remove
    would climb above the base path and is refused, as is a segment that decodes to a dot part
    next to a separator or parameter (``..%2F``, ``..\\``, ``..;x``), which an upstream could read
    either way.
    """
    if not path.startswith("/"):
        raise DestinationRefused("request target must be a path (origin-form)")
    if "\\" in path:
        raise DestinationRefused("backslash in the request path")
    segments = path[1:].split("/")
    last = len(segments) - 1
    kept: list[str] = []
    for index, segment in enumerate(segments):
        decoded = unquote(segment, errors="surrogateescape") if "%" in segment else segment
        if decoded in (".", ".."):
            if decoded == "..":
                if not kept:
                    raise DestinationRefused("request path climbs above the service's base path")
                kept.pop()
            if index == last:
                kept.append("")  # '/a/..' names the directory '/', as RFC 3986 §5.2.4 has it
            continue
        if _hides_dot_segment(decoded):
            raise DestinationRefused("separator or ';' next to a dot segment in the request path")
        kept.append(segment)
    return "/" + "/".join(kept)


def _hides_dot_segment(decoded: str) -> bool:
    parts = _SEPARATORS.split(decoded)
    return len(parts) > 1 and any(part in (".", "..") for part in parts)
