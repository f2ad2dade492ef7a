"""Issue #15, findings 4–7 and 12: a hostile upstream hides the credential it was sent in the parts of a
response a proxy might relay without looking: the reason phrase, header names, a coding's name,
stacked or duplicated codings, transfer codings, and the values of the service's cookie jar.

The upstream (tests/peers/hostile_upstream.py) is real TLS on 127.0.0.1 and echoes whatever it got;
the caller holds a proxy token. Every secret is registered, so the teardown leak scan reads every
response byte and the server's logs for it, on top of the assertions here.
"""

from __future__ import annotations

import base64
import gzip
import socket
from pathlib import Path

import httpx
import pytest
from hostile_upstream import HostileUpstream


@pytest.fixture(scope="module")
def hostile(upstream):
    peer = HostileUpstream(upstream.ca).start()
    yield peer
    peer.stop()


def raw_get(env, target: str, token: str) -> bytes:
    """The caller's view, byte for byte (an HTTP client would hide the reason and decode codings).
    Not seen by the recorder: each test checks these bytes itself with ``assert_no_secret``."""
    host, port = env.server.addr.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: v\r\nAuthorization: Bearer {token}\r\n"
            "Accept-Encoding: gzip, br\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def secret_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), gzip.compress(raw)[10:-8]]


def assert_no_secret(data: bytes, secret: str) -> None:
    for form in secret_forms(secret):
        assert form not in data, f"secret form {form[:12]!r}… reached the caller"


def hostile_service(env, hostile) -> tuple[str, str]:
    return env.bearer(base_url=hostile.url)


def test_reason_phrase_is_scrubbed(proxy_env, hostile):
    """Finding 4: ``HTTP/1.1 200 <secret>`` reached the caller as is."""
    name, secret = hostile_service(proxy_env, hostile)
    data = raw_get(proxy_env, f"/proxy/{name}/reason", proxy_env.token())
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 200 ")
    assert_no_secret(data, secret)


def test_header_name_holding_the_secret_is_dropped(proxy_env, hostile):
    """Finding 5: ``X-<secret>: 1`` reached the caller (only values were scrubbed)."""
    name, secret = hostile_service(proxy_env, hostile)
    resp = proxy_env.call("GET", name, "/header-name")
    assert resp.status_code == 200
    assert not [h for h in resp.headers if secret.lower() in h.lower()]
    assert_no_secret(raw_get(proxy_env, f"/proxy/{name}/header-name", proxy_env.token()), secret)


def test_unscannable_coding_error_never_quotes_it(proxy_env, hostile):
    """Finding 6: the 502 quoted the upstream's Content-Encoding value, which was the secret."""
    name, secret = hostile_service(proxy_env, hostile)
    resp = proxy_env.call("GET", name, "/coding-value")
    assert resp.status_code == 502
    assert secret not in resp.text and "scan" in resp.json()["error"]
    resp = proxy_env.call("GET", name, "/unknown-coding")
    assert resp.status_code == 502 and "zstd" not in resp.text


@pytest.mark.parametrize("path", ["/double-coding", "/stacked-coding", "/te-gzip"])
def test_every_coding_is_decoded_and_scanned(proxy_env, hostile, path):
    """Finding 7: with ``identity`` then ``gzip`` (or gzip as a transfer coding) the body went out
    unscanned, and the caller's client decompressed the secret."""
    name, secret = hostile_service(proxy_env, hostile)
    resp = proxy_env.call("GET", name, path)
    assert resp.status_code == 200
    assert resp.content == b"the key is [REDACTED]"
    assert "content-encoding" not in resp.headers  # decoded by the vault, sent plain
    assert_no_secret(raw_get(proxy_env, f"/proxy/{name}{path}", proxy_env.token()), secret)


def test_cookie_jar_values_are_never_echoed(proxy_env, hostile):
    """Finding 12: the jar is server-side, but an upstream echoing the Cookie header showed its values."""
    name, _ = proxy_env.bearer(base_url=hostile.url, session_cookies=True)
    session_id = proxy_env.secrets.new("sid")
    resp = proxy_env.call("GET", name, "/set-cookie", params={"v": session_id})
    assert resp.status_code == 200 and "set-cookie" not in resp.headers
    resp = proxy_env.call("GET", name, "/cookie-echo", headers={"Cookie": "mine=caller-own-value"})
    assert resp.status_code == 200
    assert session_id not in resp.text and session_id not in resp.headers["X-Seen-Cookie"]
    assert "[REDACTED]" in resp.text
    assert "mine=caller-own-value" in resp.text  # the caller's own cookie is its own business


def test_a_secret_that_is_not_ascii_is_kept_out_of_the_reason(proxy_env, hostile):
    """A reason phrase that is not printable ASCII is replaced by the standard one (no round trip
    through another charset can carry a secret out in a different byte form)."""
    name, secret = hostile_service(proxy_env, hostile)
    data = raw_get(proxy_env, f"/proxy/{name}/reason", proxy_env.token())
    assert data.split(b"\r\n", 1)[0].isascii()
    assert_no_secret(data, secret)


# --------------------------------------------------------------------------- found by the red-team review


def peak_rss_mb(server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_compression_bomb_is_decoded_in_bounded_pieces(proxy_env, hostile):
    """A ~100 KB brotli body with a Content-Length that expands to 128 MiB was decoded whole, in one
    go on the event loop (the red-team run saw 2 GB and a 12 s stall from 1 GiB). Now it streams."""
    name, _ = hostile_service(proxy_env, hostile)
    before = peak_rss_mb(proxy_env.server)
    received = 0
    with httpx.Client(timeout=60) as client, client.stream(  # unrecorded: 128 MiB of zeros, no secret
        "GET", proxy_env.url(name, "/br-bomb"), headers={"Authorization": f"Bearer {proxy_env.token()}"}
    ) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_raw():
            received += len(chunk)
    assert received == 128 * 1024 * 1024
    assert peak_rss_mb(proxy_env.server) - before < 64  # decoded whole, it was 128 MiB and more


def test_a_location_that_climbs_out_of_the_base_is_not_mapped_to_vault_routes(proxy_env, hostile):
    """``Location: <base>/../../services/x`` was rewritten to ``/proxy/svc/../../services/x``: a client
    following it resolved the dots and sent its vault token to ``/services/x`` on the vault."""
    name, _ = proxy_env.bearer(base_url=f"{hostile.url}/api/v1")
    resp = proxy_env.call("GET", name, "/escape-redirect", headers={"X-Base": f"{hostile.url}/api/v1"})
    assert resp.status_code == 307
    location = resp.headers["Location"]
    assert not location.startswith("/"), location  # left absolute, pointing at the upstream
    assert location.startswith(hostile.url)


def test_a_second_vault_token_in_the_other_header_is_never_forwarded(proxy_env):
    """Authorization authenticated the call; a vault token also in x-api-key went upstream as is."""
    name = proxy_env.add({"type": "header", "header_name": "X-Custom-Key", "header_value": proxy_env.secrets.new("h")})
    other = proxy_env.token(fresh=True)
    mark = proxy_env.upstream.mark()
    resp = proxy_env.call("GET", name, "/echo", headers={"x-api-key": other})
    assert resp.status_code == 200, resp.text  # the upstream answers 400 when it sees a vault token
    (seen,) = proxy_env.upstream.since(mark)
    assert "x-api-key" not in seen.header_names()


@pytest.mark.parametrize("code", ["000", "099", "600", "999"])
def test_a_status_outside_http_is_a_502(proxy_env, hostile, code):
    name, _ = hostile_service(proxy_env, hostile)
    resp = proxy_env.call("GET", name, f"/status-{code}")
    assert resp.status_code == 502 and resp.json() == {"error": "upstream request failed"}
