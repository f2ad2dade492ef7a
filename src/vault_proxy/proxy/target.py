"""Where a proxied request goes, and how upstream redirects map back into the proxy."""

from __future__ import annotations

from urllib.parse import urljoin

from yarl import URL


def proxied_tail(raw_path: str, service: str) -> str:
    """The caller's path after ``/proxy/{service}``, query included, exactly as the caller encoded it."""
    prefix = f"/proxy/{service}"
    return raw_path[len(prefix) :] if raw_path.startswith(prefix) else raw_path


def upstream_url(base_url: str, tail: str) -> URL:
    """``base_url`` + tail, keeping ``%2F``, ``%3F``, ``%23`` and the raw query untouched."""
    base_path, _, base_query = base_url.partition("?")
    tail_path, has_query, tail_query = tail.partition("?")
    path = (base_path.rstrip("/") if tail_path.startswith("/") else base_path) + tail_path
    query = "&".join(part for part in (base_query, tail_query) if part)
    return URL(f"{path}?{query}" if query or has_query else path, encoded=True)


def rewrite_location(location: str, request_url: URL, base_url: str, service: str) -> str:
    """A ``Location`` inside the service's base URL becomes the matching ``/proxy/{service}/…`` path.

    Anything else is returned as an absolute URL, so the caller is never silently sent elsewhere.
    """
    absolute = urljoin(str(request_url), location)
    base = base_url.rstrip("/")
    if absolute == base or absolute.startswith((base + "/", base + "?")):
        return f"/proxy/{service}{absolute[len(base) :]}"
    return absolute
