"""SSRF defence and upstream TLS (SPEC §9): loopback and other non-global upstreams are refused unless
inside ``--allow-private``; plain http only with ``tls_skip_verify`` (the homelab escape hatch), which
still never reaches link-local/metadata addresses; certificates are checked against ``--ca-file``."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from conftest import _start_proxy_server
from helpers import assert_error, free_port, unique

NOT_ALLOWED = "upstream address not allowed"


def loopback_hostnames() -> list[str]:
    """Names (besides ``localhost``) that resolve only to loopback here, e.g. the machine's hostname."""
    names = []
    for name in ("localhost", "ip6-localhost", "ip6-loopback", socket.gethostname()):
        try:
            infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
        except OSError:
            continue
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
        if addresses and all(a.is_loopback for a in addresses) and name not in names:
            names.append(name)
    assert "localhost" in names, "localhost does not resolve to loopback on this machine"
    return names


LOOPBACK_HOSTS = [
    "127.0.0.1",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "127.0.0.2",
    "[::]",
]
# Shorthand IPv4 forms that getaddrinfo() maps to 127.0.0.1 (inet_aton rules).
NON_CANONICAL_HOSTS = ["127.1", "2130706433", "0x7f.1"]


def assert_refused_untouched(env, name: str, *, method: str = "GET", message: str = NOT_ALLOWED) -> None:
    """The call is refused with ``message`` and nothing reached the upstream (no request, no TLS handshake)."""
    mark, handshakes = env.upstream.mark(), env.upstream.handshakes
    resp = env.call(method, name, f"/echo/{unique('ssrf')}")
    if resp.status_code != 403:
        info = env.server.http.get(f"/services/{name}", headers=env.server.admin_headers()).json()
        audit = env.proxy_audit(name)[-1:]
        pytest.fail(f"{info.get('base_url')}: {resp.status_code} {resp.text} (audit: {audit})")
    assert_error(resp, 403, message)
    assert env.upstream.since(mark) == [], f"{name}: the upstream got a request"
    assert env.upstream.handshakes == handshakes, f"{name}: a TLS connection reached the upstream"


def check_hosts_refused(env, hosts: list[str]) -> list[str]:
    """Add a service per host and call it; returns hosts refused at add time, fails listing every problem."""
    refused_at_add, problems = [], []
    for host in hosts:
        name = unique("ssrf")
        auth = {"type": "bearer", "token": env.secrets.new("bearer")}
        body = {"name": name, "base_url": f"https://{host}:{env.upstream.port}", "auth": auth}
        resp = env.server.http.post("/services", json=body, headers=env.server.admin_headers())
        if resp.status_code == 400:  # refusing an odd host form at add time is fine too
            refused_at_add.append(host)
            continue
        assert resp.status_code == 201, f"{host}: {resp.status_code} {resp.text}"
        for method in ("GET", "POST"):
            try:
                assert_refused_untouched(env, name, method=method)
            except (AssertionError, pytest.fail.Exception) as exc:
                problems.append(f"{host} {method}: {exc}")
    print(f"hosts refused at add time: {refused_at_add}")
    assert not problems, "\n".join(problems)
    return refused_at_add


def test_loopback_upstreams_refused_without_allow_private(strict_proxy_env):
    env = strict_proxy_env
    refused_at_add = check_hosts_refused(env, LOOPBACK_HOSTS + loopback_hostnames())
    assert refused_at_add == [], "ordinary loopback URLs must be accepted at add time and refused at call time"
    entries = [e for e in env.audit() if e.get("action") == "proxy"]
    assert entries and all(e["status"] == 403 for e in entries)


def test_non_canonical_ipv4_hosts_refused_cleanly(strict_proxy_env):
    """``127.1``-style hosts must never reach the upstream (asserted for every call) and must be refused
    with a clear error: 400 at add time or 403 at call time, not a generic 502."""
    env = strict_proxy_env
    mark, handshakes = env.upstream.mark(), env.upstream.handshakes
    try:
        check_hosts_refused(env, NON_CANONICAL_HOSTS)
    finally:
        assert env.upstream.since(mark) == [] and env.upstream.handshakes == handshakes


def test_refused_address_is_audited_without_detail_to_caller(strict_proxy_env):
    env = strict_proxy_env
    name, _ = env.bearer()
    resp = env.call("GET", name, "/echo")
    assert resp.json() == {"error": NOT_ALLOWED}  # no address, no reason: the detail is for the audit log
    (entry,) = env.proxy_audit(name)
    assert entry["status"] == 403


def test_allow_private_admits_loopback_names_and_ipv6(proxy_env):
    for host, local in (("localhost", None), ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1")):
        name, secret = proxy_env.bearer(base_url=proxy_env.upstream.url_for(host))
        marker = unique("ok")
        resp = proxy_env.call("GET", name, f"/echo/{marker}")
        assert resp.status_code == 200, f"{host}: {resp.status_code} {resp.text}"
        seen = proxy_env.upstream.only(marker)
        assert seen.header("Host") == f"{host}:{proxy_env.upstream.port}"
        assert seen.header("Authorization") == f"Bearer {secret}"
        assert seen.scheme == "https"
        if local:
            assert seen.local == local


def test_allow_private_does_not_open_other_ranges(proxy_env):
    """``--allow-private 127.0.0.0/8`` is not a blanket pass: a private 10.x or metadata address stays refused."""
    for base_url in ("https://10.255.255.1", "https://169.254.169.254", "https://[fe80::1]"):
        name, _ = proxy_env.bearer(base_url=base_url)
        assert_refused_untouched(proxy_env, name)


# --------------------------------------------------------------------------- plain http and tls_skip_verify


def assert_plain_http_refused(env) -> None:
    """An http:// base_url without tls_skip_verify is refused with a clear JSON error: 400 when the
    service is added (what this server does), or 403 when it is called; nothing reaches the upstream."""
    mark = env.upstream.mark()
    name = unique("plain")
    auth = {"type": "bearer", "token": env.secrets.new("bearer")}
    body = {"name": name, "base_url": env.upstream.http_url, "auth": auth}
    resp = env.server.http.post("/services", json=body, headers=env.server.admin_headers())
    if resp.status_code == 400:
        assert_error(resp, 400, contains=("https", "tls_skip_verify"))
    else:
        assert resp.status_code == 201, resp.text
        assert_error(env.call("GET", name, "/echo"), 403, contains="https")
    assert env.upstream.since(mark) == []


def test_plain_http_upstream_refused_without_skip_verify(proxy_env):
    """Even where the address is allowed, an http:// base_url needs tls_skip_verify."""
    assert_plain_http_refused(proxy_env)


def test_plain_http_refused_on_strict_server(strict_proxy_env):
    assert_plain_http_refused(strict_proxy_env)


def test_skip_verify_homelab_http_loopback_works_without_allow_private(strict_proxy_env):
    env = strict_proxy_env
    name, secret = env.bearer(base_url=env.upstream.http_url, tls_skip_verify=True)
    marker = unique("homelab")
    resp = env.call("GET", name, f"/echo/{marker}")
    assert resp.status_code == 200, resp.text
    seen = env.upstream.only(marker)
    assert seen.scheme == "http"
    assert seen.header("Authorization") == f"Bearer {secret}"
    assert seen.leaked == []


METADATA_URLS = [
    "http://169.254.169.254/latest",
    "https://169.254.169.254",
    "http://[::ffff:169.254.169.254]",
    "http://169.254.1.1",
    "http://[fe80::1]",
    "http://100.100.100.200",
]


def test_skip_verify_never_reaches_link_local_or_metadata(strict_proxy_env):
    for base_url in METADATA_URLS:
        name, _ = strict_proxy_env.bearer(base_url=base_url, tls_skip_verify=True)
        resp = strict_proxy_env.call("GET", name, "/meta-data/iam")
        assert resp.status_code == 403, f"{base_url}: {resp.status_code} {resp.text}"
        assert resp.json() == {"error": NOT_ALLOWED}


# --------------------------------------------------------------------------- certificates


def test_untrusted_certificate_is_502_and_skip_verify_accepts_it(start_server, upstream, secrets):
    """Without ``--ca-file`` the upstream's private CA is unknown: 502, and the request never arrives."""
    server = start_server("--allow-private", "127.0.0.0/8")
    server.unlock(secrets.new("master-pw"))
    upstream.forbidden.add(server.admin_token)
    headers = server.admin_headers()
    names = {}
    for skip in (False, True):
        name = unique("tls")
        auth = {"type": "bearer", "token": secrets.new("bearer")}
        body = {"name": name, "base_url": upstream.url, "auth": auth, "tls_skip_verify": skip}
        assert server.http.post("/services", json=body, headers=headers).status_code == 201
        names[skip] = name
    marker = unique("untrusted")
    resp = server.http.get(f"/proxy/{names[False]}/echo/{marker}", headers=headers)
    assert_error(resp, 502, "upstream request failed")
    assert upstream.matching(marker) == []
    resp = server.http.get(f"/proxy/{names[True]}/echo/{marker}", headers=headers)
    assert resp.status_code == 200, resp.text
    assert len(upstream.matching(marker)) == 1


def test_outbound_http_proxy_keeps_the_target_checks(start_server, upstream, secrets):
    """With --http-proxy the vault never resolves the target for the connection, so it checks it first:
    a loopback target is refused before anything is dialled (the proxy address here does not even listen)."""
    env = _start_proxy_server(start_server, upstream, secrets, "--http-proxy", f"http://127.0.0.1:{free_port()}")
    mark = env.upstream.mark()
    check_hosts_refused(env, ["127.0.0.1", "localhost"])
    assert env.upstream.since(mark) == []
    name, _ = env.bearer(base_url=f"https://127.0.0.1:{env.upstream.port}", tls_skip_verify=True)
    resp = env.call("GET", name, "/echo")
    assert resp.status_code == 502 and resp.json() == {"error": "upstream request failed"}  # homelab: dials the proxy
