"""Server-side cookie jars (session_cookies): capture, scoping, deletion, limits, secrecy."""

from __future__ import annotations

import time
from email.utils import formatdate

from yarl import URL

from vault_proxy.proxy.cookies import CookieJars, ServiceCookieJar

LOCAL = URL("http://127.0.0.1:8765/api/login")
HTTPS = URL("https://api.example.com/v1/login")


def jar_with(*headers: str, url: URL = LOCAL) -> ServiceCookieJar:
    jar = ServiceCookieJar()
    jar.capture(headers, url)
    return jar


def test_capture_and_send_on_loopback_ip_with_port():
    jar = jar_with("sid=abc123; Path=/; HttpOnly", "theme=dark")
    assert len(jar) == 2
    # Longer paths first (RFC 6265): theme has the default path /api.
    assert jar.header_for(URL("http://127.0.0.1:8765/api/items?x=1")) == "theme=dark; sid=abc123"
    assert jar.header_for(URL("http://127.0.0.1:9999/")) == "sid=abc123"  # ports do not scope cookies
    assert jar.header_for(URL("http://127.0.0.2:8765/api/x")) is None
    assert ServiceCookieJar().header_for(LOCAL) is None


def test_ipv6_loopback():
    jar = jar_with("sid=v6; Secure", url=URL("http://[::1]:8080/"))
    assert jar.header_for(URL("http://[::1]:8080/x")) == "sid=v6"


def test_path_scoping_and_default_path():
    jar = jar_with("a=1; Path=/api", "b=2; Path=/api/v2/", "c=3; Path=/other", "d=4", "e=5; Path=relative")
    # d and e get the default path of /api/login: "/api".
    assert jar.header_for(URL("http://127.0.0.1:8765/api/v2/x")) == "b=2; a=1; d=4; e=5"
    assert jar.header_for(URL("http://127.0.0.1:8765/api")) == "a=1; d=4; e=5"
    assert jar.header_for(URL("http://127.0.0.1:8765/apixyz")) is None
    assert jar.header_for(URL("http://127.0.0.1:8765/api/v2")) == "a=1; d=4; e=5"
    assert jar.header_for(URL("http://127.0.0.1:8765/other/1")) == "c=3"
    assert jar_with("r=1", url=URL("http://127.0.0.1/")).header_for(URL("http://127.0.0.1/deep/x")) == "r=1"


def test_same_name_replaces_and_keeps_order():
    jar = jar_with("a=1", "b=2")
    jar.capture(["a=changed"], LOCAL)
    assert len(jar) == 2
    assert jar.header_for(LOCAL) == "a=changed; b=2"


def test_max_age_zero_deletes():
    jar = jar_with("sid=abc; Path=/", "keep=1; Path=/")
    jar.capture(["sid=; Path=/; Max-Age=0"], LOCAL)
    assert jar.header_for(LOCAL) == "keep=1" and len(jar) == 1
    jar.capture(["keep=x; Path=/; Max-Age=-5"], LOCAL)
    assert len(jar) == 0 and jar.header_for(LOCAL) is None


def test_past_expires_deletes_and_future_expires_keeps():
    jar = jar_with("sid=abc; Path=/", "old=1; Path=/")
    jar.capture(["sid=gone; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"], LOCAL)
    jar.capture(["new=2; Path=/; Expires=" + formatdate(time.time() + 3600, usegmt=True)], LOCAL)
    jar.capture(["dash=3; Path=/; Expires=Wed, 21-Oct-2099 07:28:00 GMT"], LOCAL)
    assert jar.header_for(LOCAL) == "old=1; new=2; dash=3"
    # Max-Age wins over Expires.
    jar.capture(["new=2; Path=/; Max-Age=0; Expires=Wed, 21 Oct 2099 07:28:00 GMT"], LOCAL)
    assert "new" not in (jar.header_for(LOCAL) or "")


def test_cookie_expires_while_stored(monkeypatch):
    jar = jar_with("short=1; Max-Age=10", "long=2")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 11)
    assert jar.header_for(LOCAL) == "long=2"
    assert len(jar) == 1


def test_limit_of_50_drops_the_oldest():
    jar = ServiceCookieJar()
    for i in range(60):
        jar.capture([f"c{i}=v{i}; Path=/"], LOCAL)
    assert len(jar) == ServiceCookieJar.MAX_COOKIES == 50
    sent = jar.header_for(LOCAL) or ""
    assert "c0=" not in sent and "c9=" not in sent and "c10=v10" in sent and "c59=v59" in sent
    jar.capture([f"x{i}=1" for i in range(200)], LOCAL)  # one response with many cookies
    assert len(jar) == 50


def test_limit_prefers_dropping_expired():
    jar = jar_with("stale=1; Max-Age=1", *[f"c{i}=1" for i in range(49)])
    now = time.time()
    jar._cookies[next(k for k in jar._cookies if k[2] == "stale")].expires = now - 1
    jar.capture(["late=1"], LOCAL)
    assert len(jar) == 50 and "c0=1" in (jar.header_for(LOCAL) or "")


def test_domain_rules():
    jar = jar_with(
        "host=1",
        "parent=2; Domain=.example.com",
        "evil=3; Domain=attacker.com",
        "tld=4; Domain=com",
        url=HTTPS,
    )
    assert jar.header_for(HTTPS) == "host=1; parent=2"
    assert jar.header_for(URL("https://www.example.com/v1/x")) == "parent=2"
    assert jar.header_for(URL("https://attacker.com/")) is None
    # An IP address host accepts a Domain only when it is the address itself.
    ip_jar = jar_with("a=1; Domain=127.0.0.1", "b=2; Domain=0.0.1")
    assert ip_jar.header_for(LOCAL) == "a=1" and len(ip_jar) == 1


def test_secure_cookies():
    jar = jar_with("s=1; Secure; Path=/", "p=2; Path=/", url=HTTPS)
    assert jar.header_for(URL("https://api.example.com/")) == "s=1; p=2"
    assert jar.header_for(URL("http://api.example.com/")) == "p=2"
    # A plain-http, non-loopback origin may not set a Secure cookie at all.
    assert len(jar_with("s=1; Secure", url=URL("http://10.0.0.5/"))) == 0
    # Loopback counts as a secure origin, as in browsers.
    assert jar_with("s=1; Secure", url=URL("http://localhost:8000/")).header_for(URL("http://localhost:8000/")) == "s=1"


def test_malformed_headers_are_ignored():
    jar = jar_with("", "novalue", "=x", ";;", "ok=1; Max-Age=abc; Expires=garbage", 'q="quoted value"')
    assert jar.header_for(LOCAL) == 'ok=1; q="quoted value"'


def test_repr_hides_values():
    jar = jar_with("sid=super-secret-session-value", "other=another-secret-value")
    text = repr(jar)
    assert "super-secret" not in text and "another-secret" not in text and "2" in text
    assert all("super-secret" not in repr(c) for c in jar._cookies.values())


def test_clear():
    jar = jar_with("a=1", "b=2")
    jar.clear()
    assert len(jar) == 0 and jar.header_for(LOCAL) is None


def test_jars_per_service():
    jars = CookieJars()
    a = jars.for_service("a")
    assert jars.for_service("a") is a and jars.for_service("b") is not a
    a.capture(["sid=1"], LOCAL)
    assert jars.for_service("b").header_for(LOCAL) is None
    jars.drop("a")
    jars.drop("never-existed")
    assert jars.for_service("a") is not a and len(jars.for_service("a")) == 0
    jars.for_service("b").capture(["x=1"], LOCAL)
    jars.clear()
    assert len(jars.for_service("b")) == 0
