"""Server-side cookie jars for services with ``session_cookies``: the upstream session lives in the vault.

Cookies never reach the caller (``Set-Cookie`` is always dropped); the jar re-sends them on later
calls to the same service. Jars live in memory only and are cleared on lock and on service delete.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from yarl import URL


@dataclass
class _Cookie:
    name: str
    value: str
    domain: str
    host_only: bool
    path: str
    secure: bool
    expires: float | None
    created: float

    def matches(self, host: str, path: str, https: bool) -> bool:
        if self.secure and not https:
            return False
        if host != self.domain and (self.host_only or not host.endswith("." + self.domain)):
            return False
        return path == self.path or path.startswith(self.path if self.path.endswith("/") else self.path + "/")


def _default_path(path: str) -> str:
    if not path.startswith("/") or path.count("/") <= 1:
        return "/"
    return path[: path.rfind("/")]


def _expiry(attrs: dict[str, str], now: float) -> float | None:
    if "max-age" in attrs:
        try:
            return now + int(attrs["max-age"])
        except ValueError:
            pass
    if "expires" in attrs:
        try:
            return parsedate_to_datetime(attrs["expires"]).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return None


class ServiceCookieJar:
    MAX_COOKIES = 50

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}

    def __len__(self) -> int:
        return len(self._cookies)

    def __repr__(self) -> str:
        return f"ServiceCookieJar({len(self._cookies)} cookies)"

    def capture(self, set_cookie_headers: Iterable[str], response_url: URL) -> None:
        host, now = (response_url.host or "").lower(), time.time()
        for header in set_cookie_headers:
            self._store(header, host, response_url.path, now)
        while len(self._cookies) > self.MAX_COOKIES:
            oldest = min(self._cookies, key=lambda key: self._cookies[key].created)
            del self._cookies[oldest]

    def _store(self, header: str, host: str, request_path: str, now: float) -> None:
        first, *rest = header.split(";")
        name, sep, value = first.partition("=")
        name = name.strip()
        if not sep or not name:
            return
        attrs = {}
        for part in rest:
            key, _, val = part.partition("=")
            attrs[key.strip().lower()] = val.strip()
        domain = attrs.get("domain", "").lower().lstrip(".")
        if domain and host != domain and not host.endswith("." + domain):
            return  # a cookie for someone else's domain
        path = attrs.get("path", "")
        cookie = _Cookie(
            name=name,
            value=value.strip(),
            domain=domain or host,
            host_only=not domain,
            path=path if path.startswith("/") else _default_path(request_path),
            secure="secure" in attrs,
            expires=_expiry(attrs, now),
            created=now,
        )
        key = (cookie.domain, cookie.path, name)
        if cookie.expires is not None and cookie.expires <= now:
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie

    def header_for(self, request_url: URL) -> str | None:
        """The ``Cookie`` value to send with a request to ``request_url`` (None when nothing applies)."""
        if not self._cookies:
            return None
        now = time.time()
        for key in [k for k, c in self._cookies.items() if c.expires is not None and c.expires <= now]:
            del self._cookies[key]
        host, path = (request_url.host or "").lower(), request_url.path or "/"
        https = request_url.scheme == "https"
        chosen = [c for c in self._cookies.values() if c.matches(host, path, https)]
        chosen.sort(key=lambda c: (-len(c.path), c.created))
        return "; ".join(f"{c.name}={c.value}" for c in chosen) or None

    def clear(self) -> None:
        self._cookies.clear()


class CookieJars:
    """Every service's jar, created on first use."""

    def __init__(self) -> None:
        self._jars: dict[str, ServiceCookieJar] = {}

    def for_service(self, name: str) -> ServiceCookieJar:
        jar = self._jars.get(name)
        if jar is None:
            jar = self._jars[name] = ServiceCookieJar()
        return jar

    def drop(self, name: str) -> None:
        self._jars.pop(name, None)

    def clear(self) -> None:
        self._jars.clear()
