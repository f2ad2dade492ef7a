"""Issue #15, findings 1 and 13: a caller's request target can never move a credential to another host
or out from under the service's base path (SPEC §9, destination rule).

The attacks are sent byte for byte on a raw socket (HTTP clients normalise targets), with a proxy token,
against a real server and the local HTTPS upstream; every secret is registered for the leak check.
"""

from __future__ import annotations

import json
import socket

import pytest


def raw_request(addr: str, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as is; return (status, headers, body) of the answer (connection closed after)."""
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get(env, target: str, token: str) -> tuple[int, dict[str, str], bytes]:
    return raw_request(
        env.server.addr,
        f"GET {target} HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
    )


@pytest.mark.parametrize(
    "target",
    [
        "pany://x/proxy/{svc}/steal",  # glued to a path-less base_url: https://api.example.company://…
        "https://evil.test/proxy/{svc}/steal",
        "http://127.0.0.1:9/proxy/{svc}/steal",
        "{upstream}/proxy/{svc}/steal",  # even the service's own origin in absolute form
    ],
)
def test_absolute_form_target_is_refused_before_any_dial(proxy_env, target):
    """Finding 1 (critical): the raw target used to be glued to base_url, so its host was dialled."""
    name, secret = proxy_env.bearer(base_url=proxy_env.upstream.url)  # no path, the documented form
    token = proxy_env.token()
    mark = proxy_env.upstream.mark()
    status, headers, body = get(proxy_env, target.format(svc=name, upstream=proxy_env.upstream.url), token)
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert "origin-form" in json.loads(body)["error"]
    assert proxy_env.upstream.since(mark) == []  # nothing was sent anywhere
    assert secret.encode() not in body
    assert not [e for e in proxy_env.proxy_audit(name) if e.get("upstream")]  # no dial was recorded


def test_absolute_form_is_refused_on_every_route(proxy_env):
    status, _, body = get(proxy_env, "http://x/services", proxy_env.server.admin_token)
    assert status == 400 and "origin-form" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "tail",
    [
        "/../../x",
        "/a/../../x",
        "/%2e%2e/x",
        "/%2E%2e/%2e%2E/x",
        "/.%2e/x",
        "/a/..%2f..%2fx",
        "/a/..%5c..%5cx",
        "/a\\..\\..\\x",
        "/..;/x",  # Tomcat/Spring read '..;' as '..'
        "/a/..;x/..;/x",
    ],
)
def test_dot_segments_cannot_leave_the_base_path(proxy_env, tail):
    """Finding 13: ``/proxy/svc/../../x`` reached the upstream as ``/../../x`` (above ``/v1``)."""
    name, _ = proxy_env.bearer(base_url=f"{proxy_env.upstream.url}/v1")
    mark = proxy_env.upstream.mark()
    status, _, body = get(proxy_env, f"/proxy/{name}{tail}", proxy_env.token())
    assert status == 400, body
    assert "error" in json.loads(body)
    assert proxy_env.upstream.since(mark) == []


@pytest.mark.parametrize(
    ("tail", "seen"),
    [
        ("/a/./b/../c?q=%2E%2E", "/v1/a/c?q=%2E%2E"),  # resolved inside the base path; the query untouched
        ("/a/%2e%2e/echo", "/v1/echo"),
        ("/x%2Fy/..", "/v1/"),
        ("/a//b", "/v1/a//b"),
    ],
)
def test_dot_segments_inside_the_base_path_are_resolved(proxy_env, tail, seen):
    name, _ = proxy_env.bearer(base_url=f"{proxy_env.upstream.url}/v1")
    mark = proxy_env.upstream.mark()
    status, _, body = get(proxy_env, f"/proxy/{name}{tail}", proxy_env.token())
    assert status < 500, body
    (request,) = proxy_env.upstream.since(mark)
    assert request.raw_path == seen


def test_audit_line_records_the_origin_dialled(proxy_env):
    name, _ = proxy_env.bearer(base_url=proxy_env.upstream.url)
    resp = proxy_env.call("GET", name, "/echo")
    assert resp.status_code == 200
    (entry,) = proxy_env.proxy_audit(name)
    port = proxy_env.upstream.url.rsplit(":", 1)[1]
    assert entry["upstream"] == f"https://127.0.0.1:{port}"
