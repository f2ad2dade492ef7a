"""Where a proxied request goes, and how upstream redirects map back into the proxy."""

from __future__ import annotations

from urllib.parse import urljoin

from yarl import URL

from ..outbound.destination import DestinationRefused, normalise_tail


def proxied_tail(raw_path: str, service: str) -> str:
    """The caller's path after ``/proxy/{service}``, query included, exactly as the caller encoded it.

    A raw path that does not start with that prefix (an absolute-form target, or a service name the
    router matched in decoded form) is refused: the caller's bytes never become part of the origin.
    """
    prefix = f"/proxy/{service}"
    if not raw_path.startswith(prefix):
        raise DestinationRefused("request target must be a path (origin-form) naming the service as routed")
    return raw_path[len(prefix) :]


def rewrite_location(location: str, request_url: URL, base_url: str, service: str) -> str:
    """A ``Location`` inside the service's base URL becomes the matching ``/proxy/{service}/…`` path.

    Anything else is returned as an absolute URL, so the caller is never silently sent elsewhere.
    """
    absolute = urljoin(str(request_url), location)
    base = base_url.rstrip("/")
    if absolute == base or absolute.startswith((base + "/", base + "?")):
        tail = absolute[len(base) :]
        tail_path, mark, query = tail.partition("?")
        try:  # dot segments resolved first: '/v1/../../services' is not inside '/v1'
            clean = normalise_tail(tail_path) if tail_path else ""
        except DestinationRefused:
            return absolute  # stays an upstream URL: a client following it never reaches the vault's routes
        return f"/proxy/{service}{clean}{mark}{query}"
    return absolute
