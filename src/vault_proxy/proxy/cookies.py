"""Server-side cookie jars for services with ``session_cookies``: the upstream session lives in the vault.

Cookies never reach the caller (``Set-Cookie`` is always dropped); the jar re-sends them on later
calls to the same service, following the browser rules of RFC 6265 for domain, path, Secure and
expiry. Jars live in memory only and are cleared on lock and on service delete.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookiejar import http2time

from yarl import URL


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _trustworthy(url: URL, host: str) -> bool:
    """HTTPS, or loopback (browsers treat http://localhost and 127.0.0.1 as secure for cookies)."""
    ip = _ip(host)
    loopback = host in ("localhost", "localhost.") or host.endswith(".localhost") or bool(ip and ip.is_loopback)
    return url.scheme == "https" or loopback


@dataclass
class _Cookie:
    name: str
    value: str = field(repr=False)
    domain: str
    host_only: bool
    path: str
    secure: bool
    expires: float | None
    order: int

    def matches(self, host: str, path: str, secure_ok: bool) -> bool:
        if (self.secure and not secure_ok) or (self.host_only and host != self.domain):
            return False
        if host != self.domain and not host.endswith("." + self.domain):
            return False
        return path == self.path or path.startswith(self.path if self.path.endswith("/") else self.path + "/")


def _default_path(path: str) -> str:
    return path[: path.rfind("/")] if path.startswith("/") and path.count("/") > 1 else "/"


class ServiceCookieJar:
    """One service's cookies (at most ``MAX_COOKIES``); ``repr`` never shows a value."""

    MAX_COOKIES = 50

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._cookies)

    def __repr__(self) -> str:
        return f"ServiceCookieJar({len(self._cookies)} cookies)"

    def values(self) -> tuple[str, ...]:
        """The values held (secrets of the service: the caller must never see them echoed)."""
        return tuple(cookie.value for cookie in self._cookies.values())

    def capture(self, set_cookie_headers: Iterable[str], response_url: URL) -> None:
        """Store the cookies of upstream ``Set-Cookie`` headers; an expired one deletes its namesake."""
        host, now = (response_url.raw_host or "").lower(), time.time()
        for header in set_cookie_headers:
            self._store(header, host, response_url, now)
        if len(self._cookies) > self.MAX_COOKIES:  # drop expired, then the oldest (insertion order)
            self._expire(now)
            for key in sorted(self._cookies, key=lambda k: self._cookies[k].order)[: -self.MAX_COOKIES]:
                del self._cookies[key]

    def _store(self, header: str, host: str, url: URL, now: float) -> None:
        first, *rest = header.split(";")
        name, sep, value = first.partition("=")
        name = name.strip()
        if not sep or not name:
            return
        attrs: dict[str, str] = {}
        for part in rest:
            key, _, val = part.partition("=")
            attrs[key.strip().lower()] = val.strip()
        domain = attrs.get("domain", "").lower().lstrip(".")
        if domain and domain != host and (_ip(host) or "." not in domain or not host.endswith("." + domain)):
            return  # another site's domain, a bare top-level domain, or a suffix of an IP address
        secure = "secure" in attrs
        if secure and not _trustworthy(url, host):
            return  # an insecure origin may not set a Secure cookie
        max_age, expires = attrs.get("max-age", ""), http2time(attrs.get("expires") or "")
        if re.fullmatch(r"-?[0-9]+", max_age):  # Max-Age wins over Expires; absurd values capped
            expires = now - 1 if max_age[0] == "-" else now + (int(max_age) if len(max_age) < 12 else 10**11)
        path = attrs.get("path", "")
        cookie = _Cookie(
            name=name,
            value=value.strip(),
            domain=domain or host,
            host_only=not domain,
            path=path if path.startswith("/") else _default_path(url.raw_path),
            secure=secure,
            expires=expires,
            order=next(self._order),
        )
        key = (cookie.domain, cookie.path, name)
        if expires is not None and expires <= now:
            self._cookies.pop(key, None)
            return
        if key in self._cookies:  # a replaced cookie keeps its age
            cookie.order = self._cookies[key].order
        self._cookies[key] = cookie

    def _expire(self, now: float) -> None:
        for key in [k for k, c in self._cookies.items() if c.expires is not None and c.expires <= now]:
            del self._cookies[key]

    def header_for(self, request_url: URL) -> str | None:
        """The ``Cookie`` value to send with a request to ``request_url`` (None when nothing applies)."""
        if not self._cookies:
            return None
        self._expire(time.time())
        host = (request_url.raw_host or "").lower()
        path, secure_ok = request_url.raw_path or "/", _trustworthy(request_url, host)
        chosen = [c for c in self._cookies.values() if c.matches(host, path, secure_ok)]
        chosen.sort(key=lambda c: (-len(c.path), c.order))
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
