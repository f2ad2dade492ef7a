"""Listener containment (issue 15, findings 11 and 14; SPEC §3), over raw sockets to a real server.

Finding 11: a connection that sends no complete request head is closed after the head timeout (TCP,
TLS, unix socket; a TLS handshake counts against it), an idle keep-alive connection after the idle
timeout; a slow upload and an SSE response that outlast both are not cut. The timeouts are shortened
with the hidden ``--head-timeout``/``--idle-timeout`` flags (docs/server.md).

Finding 14: a request aiohttp cannot parse (bare LF, bad header bytes, oversize lines, bad chunk
framing, non-HTTP bytes) is answered 400 with a fixed JSON error, the security headers and
``Connection: close``; the caller's token (a real one of the running server) is in neither the
response nor the server log, which gets one INFO line per refused request and no traceback.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from helpers import SECURITY_HEADERS, Recorded, ServerHandle, add_service, free_port, make_temp_dir, unique
from raw_server import run_server, stop, wait_health, write_tls_files

from vault_proxy.server.listener_guard import GuardedSite
from vault_proxy.server.listener_timeouts import ListenerTimeouts

HEAD, IDLE = 1.0, 4.0  # shortened head and idle timeouts (seconds)
SHORT = {"head_timeout": HEAD, "idle_timeout": IDLE}
EARLY = 0.8  # a close before this fraction of its timeout is a failure
GRACE = 6.0  # how late after its deadline a close may come on a loaded machine
ALLOW_LOOPBACK = ("--allow-private", "127.0.0.0/8", "--allow-private", "::1/128")
REFUSED_LINE = "refused a malformed request"
MALFORMED_BODY = {"error": "malformed request"}


# --------------------------------------------------------------------------- raw-socket helpers


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def seconds_until_closed(sock: socket.socket, started: float, limit: float) -> tuple[float | None, bytes]:
    """(seconds from ``started`` until the peer closed, or None if open at ``started + limit``; bytes seen)."""
    received = b""
    while (left := started + limit - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], min(left, 0.5))
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except ssl.SSLWantReadError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return time.monotonic() - started, received
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
    return None, received


def read_until_closed(sock: socket.socket, limit: float = 15.0) -> bytes:
    closed, data = seconds_until_closed(sock, time.monotonic(), limit)
    assert closed is not None, f"the server kept the connection open for {limit} s after: {data[:300]!r}"
    return data


def parse_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of one HTTP/1.x response (the body is what follows the head)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    assert version.startswith("HTTP/1."), lines[0]
    headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    return int(status), headers, body


def read_response(sock: socket.socket, limit: float = 10.0) -> tuple[int, list[tuple[str, str]], bytes]:
    """One complete response with a Content-Length, read from a connection that stays open."""
    data, deadline = b"", time.monotonic() + limit
    while time.monotonic() < deadline:
        if b"\r\n\r\n" in data:
            status, headers, body = parse_response(data)
            length = int(dict(headers).get("content-length", "-1"))
            if len(body) >= length >= 0:
                return status, headers, body
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data[:300]!r}"
        data += chunk
    pytest.fail(f"no complete response within {limit} s: {data[:300]!r}")


def record(server: ServerHandle, path: str, raw: bytes) -> None:
    """Put a raw-socket response under the fixture's leak check too."""
    server.recorder.responses.append(Recorded(method="RAW", path=path, status=0, headers=[], body=raw))


def assert_closed_in_window(closed: float | None, timeout: float, what: str) -> None:
    assert closed is not None, f"{what}: still open {timeout + GRACE:.1f} s later (timeout {timeout} s)"
    assert closed >= EARLY * timeout, f"{what}: closed after {closed:.2f} s, before its {timeout} s timeout"


def mint_token(server: ServerHandle, secrets) -> str:
    """A real proxy token, minted off the recorder (so no recorded response carries it), registered."""
    resp = httpx.post(f"{server.addr}/tokens", json={"scope": "proxy"}, headers=server.admin_headers(), timeout=10)
    assert resp.status_code == 201, resp.text
    return secrets.add(resp.json()["id"])


# --------------------------------------------------------------------------- finding 11: timeouts


def test_connection_without_a_complete_head_is_closed(start_server) -> None:
    server = start_server(**SHORT)

    sock = connect(server.port)  # says nothing at all
    closed, data = seconds_until_closed(sock, time.monotonic(), HEAD + GRACE)
    sock.close()
    assert_closed_in_window(closed, HEAD, "silent connection")
    assert data == b""

    sock = connect(server.port)  # slowloris: a header line every 0.2 s, never the blank line
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = None
    for i in range(int((HEAD + GRACE) / 0.2)):
        try:
            sock.sendall(f"X-Slow-{i}: {i}\r\n".encode())
        except OSError:
            closed = time.monotonic() - started
            break
        done, _ = seconds_until_closed(sock, time.monotonic(), 0.2)
        if done is not None:
            closed = time.monotonic() - started
            break
    sock.close()
    assert_closed_in_window(closed, HEAD, "slow head")
    assert server.http.get("/health").status_code == 200  # the listener itself is fine


def test_keep_alive_connection_is_closed_when_idle(start_server) -> None:
    server = start_server(**SHORT)
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    sock = connect(server.port)
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    time.sleep(HEAD + 0.5)  # past the head deadline: it only applies to a connection's first head
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    closed, data = seconds_until_closed(sock, time.monotonic(), IDLE + GRACE)
    sock.close()
    assert_closed_in_window(closed, IDLE, "idle keep-alive connection")
    assert data == b""

    sock = connect(server.port)  # a kept-alive connection part way into its next head: the idle limit
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    closed, data = seconds_until_closed(sock, started, IDLE + GRACE)
    sock.close()
    assert_closed_in_window(closed, IDLE, "keep-alive connection with a partial head")


def test_unix_socket_listener_has_the_same_timeouts(start_server) -> None:
    path = make_temp_dir() / "op.sock"
    start_server("--listen", f"unix:{path}", **SHORT)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    closed, _ = seconds_until_closed(sock, time.monotonic(), HEAD + GRACE)
    sock.close()
    assert_closed_in_window(closed, HEAD, "silent unix-socket connection")

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: vault\r\n\r\n")
    assert read_response(sock)[0] == 200
    closed, _ = seconds_until_closed(sock, time.monotonic(), IDLE + GRACE)
    sock.close()
    assert_closed_in_window(closed, IDLE, "idle unix-socket connection")


@pytest.fixture
def proxied(start_server, upstream, secrets) -> tuple[ServerHandle, str, str]:
    """(server with the short timeouts that trusts the upstream, a bearer service on it, a proxy token)."""
    server = start_server("--ca-file", str(upstream.ca_path), *ALLOW_LOOPBACK, **SHORT)
    server.unlock(secrets.new("master-pw"))
    upstream.forbidden.add(server.admin_token or "")
    name = unique("svc")
    add_service(
        server, {"name": name, "base_url": upstream.url, "auth": {"type": "bearer", "token": secrets.new("bearer")}}
    )
    token = mint_token(server, secrets)
    upstream.forbidden.add(token)
    return server, name, token


def test_streams_and_slow_uploads_outlast_the_timeouts(proxied) -> None:
    server, name, token = proxied
    auth = {"Authorization": f"Bearer {token}"}
    events, delay = 13, 0.5  # 6 s of events: longer than the head and the idle timeout together
    started = time.monotonic()
    resp = server.http.get(f"/proxy/{name}/sse", params={"n": events, "delay": delay}, headers=auth)
    assert resp.status_code == 200, resp.text
    assert [line for line in resp.text.splitlines() if line.startswith("id: ")] == [f"id: {i}" for i in range(events)]
    assert time.monotonic() - started >= (events - 1) * delay > HEAD + IDLE

    def slow_body() -> Iterator[bytes]:  # nothing for a while after the head, then a piece every 0.5 s
        for _ in range(13):
            time.sleep(0.5)
            yield b"u" * 1024

    started = time.monotonic()
    resp = server.http.post(f"/proxy/{name}/upload", content=slow_body(), headers=auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["length"] == 13 * 1024
    assert time.monotonic() - started >= 6.5 > HEAD + IDLE


# --------------------------------------------------------------------------- finding 14: malformed requests


def _chunked(token: str, chunk_line: str, path: str = "/tokens") -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunk_line}\r\n\r\n"
    )


MALFORMED: dict[str, Callable[[str], bytes]] = {
    "bare LF line endings": lambda t: f"GET /health HTTP/1.1\nAuthorization: Bearer {t}\n\n".encode(),
    "bare LF after a header": lambda t: f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\n\r\n".encode(),
    "control byte in a header value": lambda t: (
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {t}\x01\r\n\r\n".encode()
    ),
    "invalid header name": lambda t: f"GET /health HTTP/1.1\r\nX-{t}(: 1\r\nAuthorization: Bearer {t}\r\n\r\n".encode(),
    "header line too long": lambda t: (
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {t}\r\nX-Copy: {t}{'a' * 9000}\r\n\r\n".encode()
    ),
    "request line too long": lambda t: f"GET /health?{t}{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "too many headers": lambda t: (
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {t}\r\n"
        + "".join(f"X-{i}: {t}\r\n" for i in range(200))
        + "\r\n"
    ).encode(),
    "invalid method": lambda t: f"G(T /health?{t} HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n".encode(),
    "invalid version": lambda t: f"GET /health?{t} HTTP/1.7x\r\nAuthorization: Bearer {t}\r\n\r\n".encode(),
    "invalid chunk size": lambda t: _chunked(t, f"zz{t}").encode(),
    "chunk size overflow": lambda t: _chunked(t, f"fffffffffffffffffffff;{t}").encode(),
    "Content-Length with chunked": lambda t: (
        f"POST /tokens HTTP/1.1\r\nAuthorization: Bearer {t}\r\nContent-Length: 3\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ).encode(),
    "non-HTTP bytes": lambda t: f"\x00\x01\x02 {t} \x7f\r\n\r\n".encode(),
    "TLS on the plain port": lambda t: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + t.encode() + b"\r\n\r\n",
}


def assert_fixed_400(raw: bytes, token: str, what: str) -> None:
    assert token.encode() not in raw, f"{what}: the response quotes the caller's token: {raw[:400]!r}"
    status, headers, body = parse_response(raw)
    assert status == 400, f"{what}: status {status}"
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name, []).append(value)
    assert values.get("content-type", [""])[0].startswith("application/json"), f"{what}: {headers}"
    assert json.loads(body) == MALFORMED_BODY, f"{what}: body {body[:300]!r}"
    for name, value in SECURITY_HEADERS.items():
        assert values.get(name) == [value], f"{what}: {name} is {values.get(name)}"
    assert values.get("connection") == ["close"], f"{what}: Connection is {values.get('connection')}"


def test_malformed_requests_get_a_fixed_answer_and_never_reach_the_log(unlocked_server, secrets) -> None:
    server = unlocked_server
    token = mint_token(server, secrets)
    problems = []
    for what, build in MALFORMED.items():
        sock = connect(server.port)
        sock.sendall(build(token))
        raw = read_until_closed(sock)
        sock.close()
        record(server, f"/malformed/{what}", raw)
        try:
            assert_fixed_400(raw, token, what)
        except AssertionError as exc:
            problems.append(str(exc))
    # The token itself was fine all along: the server still accepts it on a well-formed request.
    resp = httpx.get(f"{server.addr}/services", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert not problems, "\n".join(problems)

    log = server.log_text()
    assert token not in log
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert log.count(REFUSED_LINE) == len(MALFORMED), log[-3000:]


def test_bad_chunk_after_the_head_leaks_nothing(unlocked_server, secrets) -> None:
    """A chunk-framing error once the request is with its handler: no echo, no log, the connection ends."""
    server = unlocked_server
    token = mint_token(server, secrets)
    for path in ("/tokens", "/proxy/nosuch/x"):
        sock = connect(server.port)
        sock.sendall(_chunked(token, '2\r\n{"', path).encode()[: -len("\r\n\r\n")])
        time.sleep(0.3)  # the handler has the request and is reading its body
        sock.sendall(f"\r\nzz{token}\r\n\r\n".encode())
        raw = read_until_closed(sock, limit=20.0)
        sock.close()
        record(server, path, raw)
        assert token.encode() not in raw
        assert 400 <= parse_response(raw)[0] < 500, raw[:300]
    log = server.log_text()
    assert token not in log and "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------- the TLS listener


def test_tls_listener_times_out_and_answers_malformed_requests(tmp_path: Path) -> None:
    cert, key, ca_pem = write_tls_files(tmp_path)
    base = make_temp_dir()
    sock_path, port = base / "op.sock", free_port()
    proc = run_server("--listen", f"127.0.0.1:{port}", "--listen", f"unix:{sock_path}", "--data-dir", str(base / "data"),
                      "--tls-cert", str(cert), "--tls-key", str(key), "--audit-log", "-",
                      "--head-timeout", str(HEAD), "--idle-timeout", str(IDLE))  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca_pem))
    token = ""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock_path)), base_url="http://vault") as unix:
            wait_health(unix, "/health", proc)
            admin = unix.post("/auth/unlock", json={"password": "tls-containment-pw"}).json()["id"]
            resp = unix.post("/tokens", json={"scope": "proxy"}, headers={"Authorization": f"Bearer {admin}"})
            token = resp.json()["id"]

        raw_tcp = connect(port)  # no TLS handshake at all
        closed, _ = seconds_until_closed(raw_tcp, time.monotonic(), HEAD + GRACE)
        raw_tcp.close()
        assert_closed_in_window(closed, HEAD, "TCP connection without a TLS handshake")

        started = time.monotonic()  # a handshake, then silence: the same budget, counted from connect
        with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as tls:
            closed, _ = seconds_until_closed(tls, started, HEAD + GRACE)
        assert_closed_in_window(closed, HEAD, "TLS connection without a request")

        with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as tls:
            tls.sendall(MALFORMED["bare LF line endings"](token))
            raw = read_until_closed(tls)
        assert_fixed_400(raw, token, "bare LF over TLS")

        plain = connect(port)  # plain HTTP with the token on the TLS port: the handshake fails
        plain.sendall(f"GET /health HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        raw = read_until_closed(plain)
        plain.close()
        assert token.encode() not in raw
    finally:
        code, _, out = stop(proc)
    assert code == 0, out[-3000:]
    assert token and token not in out
    assert "Traceback" not in out and " ERROR " not in out, out[-3000:]
    assert out.count(REFUSED_LINE) == 1, out[-3000:]


# --------------------------------------------------------------------------- in process: the other statuses


async def test_a_failure_that_escapes_the_app_is_answered_in_json() -> None:
    """aiohttp's last-resort 500 (a handler failure no middleware caught) has the JSON shape too."""

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application()  # no vault middleware: the failure reaches the connection handler
    app.router.add_get("/", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        await GuardedSite(runner, sock, timeouts=ListenerTimeouts()).start()
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
    finally:
        await runner.cleanup()
        sock.close()
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error"}
    assert resp.headers["content-type"].startswith("application/json")
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get_list(name) == [value]
