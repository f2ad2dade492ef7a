"""Secret echo scrubbing and server-side cookie jars (SPEC §9).

Scrubbing: an upstream that reflects the injected credential (body and response headers, plain,
gzip, brotli, streamed, split across SSE chunks) must never hand it to the caller. Cookie jars:
``session_cookies: true`` keeps the upstream session in the vault; the caller never sees Set-Cookie.
The leak check at teardown backs every "never" here: each secret is registered with ``secrets``.
"""

from __future__ import annotations

import base64
import json

import httpx
from helpers import unique

REDACTED = "[REDACTED]"


def redaction_audited(env, service: str) -> bool:
    for entry in env.audit():
        if entry.get("service") != service:
            continue
        if entry.get("redactions") or (entry.get("action", "").startswith("proxy.redact") and entry.get("hits")):
            return True
    return False


# --------------------------------------------------------------------------- scrubbing per auth type


def test_bearer_echo_scrubbed_in_body_and_headers(proxy_env):
    name, secret = proxy_env.bearer()
    resp = proxy_env.call("GET", name, "/echo")
    assert resp.status_code == 200
    assert secret not in resp.text
    assert resp.headers["X-Echo-Authorization"] == f"Bearer {REDACTED}"
    assert resp.json()["echo"]["Authorization"] == f"Bearer {REDACTED}"
    assert ["Authorization", f"Bearer {REDACTED}"] in resp.json()["headers"]
    assert redaction_audited(proxy_env, name)


def test_header_auth_echo_scrubbed(proxy_env):
    value = proxy_env.secrets.new("header")
    name = proxy_env.add({"type": "header", "header_name": "X-Custom-Key", "header_value": value})
    resp = proxy_env.call("GET", name, "/echo", params={"h": "X-Custom-Key"})
    assert resp.status_code == 200
    assert resp.headers["X-Echo-Named"] == REDACTED
    assert resp.json()["echo"]["Named"] == REDACTED


def test_basic_auth_echo_scrubbed_raw_and_base64(proxy_env):
    password = proxy_env.secrets.new("basic-pw")
    encoded = proxy_env.secrets.add(base64.b64encode(f"alice:{password}".encode()).decode())
    name = proxy_env.add({"type": "basic", "username": "alice", "password": password})
    resp = proxy_env.call("GET", name, "/echo")
    assert resp.status_code == 200
    assert encoded not in resp.text and password not in resp.text
    assert resp.headers["X-Echo-Authorization"] == f"Basic {REDACTED}"
    assert resp.headers["X-Echo-Basic-Decoded"] == f"alice:{REDACTED}"


def test_url_token_echo_scrubbed_raw_and_encoded(proxy_env):
    token = proxy_env.secrets.new("urltok") + "/with space"
    proxy_env.secrets.add(token.replace("/", "%2F").replace(" ", "%20"))
    name = proxy_env.add({"type": "url", "token": token}, base_url=f"{proxy_env.upstream.url}/t/{{token}}")
    resp = proxy_env.call("GET", name, "/echo/page")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["raw_path"] == f"/t/{REDACTED}/echo/page"
    assert resp.headers["X-Echo-Token"] == REDACTED


def test_json_escaped_secret_scrubbed(proxy_env):
    """A secret with characters JSON escapes comes back escaped inside a JSON body: still redacted."""
    value = proxy_env.secrets.new("hdr") + '"quoted\\slash'
    proxy_env.secrets.add(json.dumps(value)[1:-1])
    name = proxy_env.add({"type": "header", "header_name": "X-Custom-Key", "header_value": value})
    resp = proxy_env.call("GET", name, "/echo", params={"h": "X-Custom-Key"})
    assert resp.status_code == 200
    assert resp.json()["echo"]["Named"] == REDACTED


# --------------------------------------------------------------------------- compressed and streamed bodies


SHAPES = [{}, {"chunked": "1"}, {"chunked": "1", "pad": "400000"}, {"pad": "400000"}]


def test_compressed_echo_scrubbed(proxy_env):
    """gzip and brotli bodies, small and large, whole and streamed: decoded, scanned, redacted."""
    name, secret = proxy_env.bearer()
    for route in ("/echo-gzip", "/echo-br"):
        for shape in SHAPES:
            resp = proxy_env.call("GET", name, route, params=shape)
            assert resp.status_code == 200, f"{route} {shape}: {resp.text}"
            body = resp.json()  # httpx decodes whatever encoding the caller got
            assert body["echo"]["Authorization"] == f"Bearer {REDACTED}", f"{route} {shape}"
            assert secret not in resp.text, f"{route} {shape}"
            assert resp.headers["X-Echo-Authorization"] == f"Bearer {REDACTED}"


def test_plain_streamed_large_echo_scrubbed(proxy_env):
    name, secret = proxy_env.bearer()
    resp, chunks = proxy_env.stream("GET", name, "/echo", params={"chunked": "1", "pad": "600000"})
    body = b"".join(c for _, c in chunks)
    assert resp.status_code == 200
    assert secret.encode() not in body
    assert json.loads(body)["echo"]["Authorization"] == f"Bearer {REDACTED}"


def test_secret_split_across_sse_chunks_scrubbed(proxy_env):
    name, secret = proxy_env.bearer()
    resp, chunks = proxy_env.stream("GET", name, "/sse-split")
    body = b"".join(c for _, c in chunks).decode()
    assert resp.status_code == 200
    assert secret not in body
    assert secret[: len(secret) // 2] not in body, "the first half of the secret got out"
    assert f'"secret": "{REDACTED}"' in body
    assert "event: done" in body


def test_split_secret_in_basic_base64_scrubbed(proxy_env):
    password = proxy_env.secrets.new("basic-pw")
    encoded = proxy_env.secrets.add(base64.b64encode(f"bob:{password}".encode()).decode())
    name = proxy_env.add({"type": "basic", "username": "bob", "password": password})
    resp, chunks = proxy_env.stream("GET", name, "/sse-split")
    body = b"".join(c for _, c in chunks).decode()
    assert encoded not in body and encoded[: len(encoded) // 2] not in body
    assert REDACTED in body


# --------------------------------------------------------------------------- redaction off


def test_redact_responses_false_returns_the_echo(proxy_env):
    """The admin's explicit choice: the secret comes back (it may reach the caller, never a log)."""
    token = "bearer-OPTOUT-" + unique("x")
    proxy_env.secrets.add_log_only(token)
    name = proxy_env.add({"type": "bearer", "token": token}, redact_responses=False)
    resp = proxy_env.call("GET", name, "/echo")
    assert resp.status_code == 200
    assert resp.headers["X-Echo-Authorization"] == f"Bearer {token}"
    assert resp.json()["echo"]["Authorization"] == f"Bearer {token}"
    # gzip passes through untouched when nothing needs to read it
    headers = {"Authorization": f"Bearer {proxy_env.token()}"}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", proxy_env.url(name, "/echo-gzip"), headers=headers) as raw,
    ):
        data = b"".join(raw.iter_raw())
    assert raw.headers.get("content-encoding") == "gzip"
    assert data[:2] == b"\x1f\x8b"
    assert not redaction_audited(proxy_env, name)


def test_gzip_decoded_for_scanning_is_consistent(proxy_env):
    """With redaction on, a gzip body the vault decoded must not still be labelled gzip."""
    name, _ = proxy_env.bearer()
    headers = {"Authorization": f"Bearer {proxy_env.token()}"}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", proxy_env.url(name, "/echo-gzip"), headers=headers) as raw,
    ):
        data = b"".join(raw.iter_raw())
    proxy_env.record(raw, data)
    if raw.headers.get("content-encoding") == "gzip":
        assert data[:2] == b"\x1f\x8b"
    else:
        assert json.loads(data)["echo"]["Authorization"] == f"Bearer {REDACTED}"


# --------------------------------------------------------------------------- cookie jars


def cookies_seen(env, name: str, **kwargs) -> dict:
    """The cookies the upstream received (read at the upstream: the jar's values are scrubbed from
    what the caller gets back, #15 finding 12)."""
    mark = env.upstream.mark()
    resp = env.call("GET", name, "/cookies", **kwargs)
    assert resp.status_code == 200, resp.text
    (seen,) = env.upstream.since(mark)
    return seen.cookies


def set_cookie(env, service: str, **params) -> None:
    resp = env.call("GET", service, "/set-cookie", params=params)
    assert resp.status_code == 200, resp.text
    assert "set-cookie" not in resp.headers, "Set-Cookie reached the caller"


def test_cookie_jar_keeps_session_server_side(proxy_env):
    name, _ = proxy_env.bearer(session_cookies=True)
    set_cookie(proxy_env, name, name="session", value="sess-one")
    assert cookies_seen(proxy_env, name) == {"session": "sess-one"}
    # the caller's own cookies travel along with the jar's
    both = cookies_seen(proxy_env, name, headers={"Cookie": "mine=1"})
    assert both == {"mine": "1", "session": "sess-one"}
    set_cookie(proxy_env, name, name="session", value="sess-two")  # replaced, not duplicated
    assert cookies_seen(proxy_env, name) == {"session": "sess-two"}
    set_cookie(proxy_env, name, name="session", delete="1")  # Max-Age=0 deletes
    assert cookies_seen(proxy_env, name) == {}
    set_cookie(proxy_env, name, name="other", value="v")
    set_cookie(proxy_env, name, name="other", expire="1")  # Expires in the past deletes
    assert cookies_seen(proxy_env, name) == {}


def test_cookie_jar_is_per_service_and_off_by_default(proxy_env):
    jar_a, _ = proxy_env.bearer(session_cookies=True)
    jar_b, _ = proxy_env.bearer(session_cookies=True)
    plain, _ = proxy_env.bearer()
    set_cookie(proxy_env, jar_a, name="a", value="only-a")
    set_cookie(proxy_env, plain, name="p", value="never-kept")
    assert cookies_seen(proxy_env, jar_a) == {"a": "only-a"}
    assert cookies_seen(proxy_env, jar_b) == {}
    assert cookies_seen(proxy_env, plain) == {}


def test_cookie_jar_cleared_on_lock(proxy_env):
    name, _ = proxy_env.bearer(session_cookies=True)
    set_cookie(proxy_env, name, name="session", value="before-lock")
    assert cookies_seen(proxy_env, name) == {"session": "before-lock"}
    proxy_env.relock()
    assert cookies_seen(proxy_env, name) == {}


def test_cookie_jar_cleared_on_service_delete(proxy_env):
    name, _ = proxy_env.bearer(session_cookies=True)
    set_cookie(proxy_env, name, name="session", value="before-delete")
    resp = proxy_env.server.http.delete(f"/services/{name}", headers=proxy_env.server.admin_headers())
    assert resp.status_code == 200
    proxy_env.bearer(name=name, session_cookies=True)
    assert cookies_seen(proxy_env, name) == {}


def test_cookie_jar_is_bounded(proxy_env):
    name, _ = proxy_env.bearer(session_cookies=True)
    for i in range(55):
        set_cookie(proxy_env, name, name=f"c{i:02d}", value=f"v{i}")
    kept = cookies_seen(proxy_env, name)
    assert 0 < len(kept) <= 50
    assert "c54" in kept, "the newest cookie was dropped instead of an old one"
