"""Upstream faults (issue: reliability evidence): whatever the upstream does, the caller gets a clean JSON 502/504
(or, once the body has started, a cut connection), the server stays healthy and nothing leaks."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import ALLOW_LOOPBACK
from faulty_upstream import FaultyUpstream
from helpers import unique


@pytest.fixture(scope="module")
def faulty(upstream):
    peer = FaultyUpstream(upstream.ca).start()
    yield peer
    peer.stop()


def _service(env, base_url: str) -> str:
    name = unique("faulty")
    token = env.secrets.new("faulty-bearer")
    resp = env.server.http.post("/services", json={"name": name, "base_url": base_url,
                                                   "auth": {"type": "bearer", "token": token}},
                                headers=env.server.admin_headers())  # fmt: skip
    assert resp.status_code == 201, resp.text
    return name


def _assert_json_error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    message = resp.json()["error"]
    assert isinstance(message, str) and message
    return message


def _healthy(env) -> None:
    assert env.server.http.get("/health").json() == {"status": "unlocked"}


@pytest.mark.parametrize("fault", ["close", "garbage", "bad-status", "huge-headers"])
def test_broken_answers_are_a_clean_502(proxy_env, faulty, fault):
    name = _service(proxy_env, faulty.url)
    started = time.monotonic()
    message = _assert_json_error(proxy_env.call("GET", name, f"/{fault}"), 502)
    assert time.monotonic() - started < 10
    assert faulty.url not in message or "127.0.0.1" in message  # the cause stays in the audit log
    assert proxy_env.call("GET", name, "/ok").text == "ok"  # the same service works right after
    _healthy(proxy_env)
    line = proxy_env.proxy_audit(name)[-2]
    assert line["status"] == 502 and line.get("error")


def test_certificate_from_another_ca_is_refused(proxy_env, upstream):
    with_bad_cert = FaultyUpstream(upstream.ca, self_signed=True).start()
    try:
        name = _service(proxy_env, with_bad_cert.url)
        _assert_json_error(proxy_env.call("GET", name, "/ok"), 502)
        assert "CERTIFICATE_VERIFY_FAILED" in proxy_env.proxy_audit(name)[-1]["error"]
    finally:
        with_bad_cert.stop()
    _healthy(proxy_env)


@pytest.fixture
def impatient_env(start_server, upstream, secrets):
    """A server whose upstream read timeout is 2 s (instead of 300 s), so stalls end within the test."""
    from conftest import ProxyEnv

    server = start_server("--ca-file", str(upstream.ca_path), *ALLOW_LOOPBACK, upstream_timeout=2)
    server.unlock(secrets.new("master-pw"))
    upstream.forbidden.add(server.admin_token)
    return ProxyEnv(server, upstream, secrets)


def test_stalled_headers_are_a_504_and_a_stalled_body_is_cut(impatient_env, faulty):
    name = _service(impatient_env, faulty.url)
    started = time.monotonic()
    _assert_json_error(impatient_env.call("GET", name, "/stall-headers"), 504)
    assert 1.5 < time.monotonic() - started < 10
    # A small body is buffered before the answer: still a clean 504.
    _assert_json_error(impatient_env.call("GET", name, "/stall-body"), 504)
    with pytest.raises(httpx.HTTPError):  # a stream's headers were sent: the only honest signal left is a cut
        impatient_env.call("GET", name, "/stall-stream")
    _healthy(impatient_env)
    assert impatient_env.proxy_audit(name)[-1].get("error")
