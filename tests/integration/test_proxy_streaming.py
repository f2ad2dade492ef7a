"""Streaming through the proxy (SPEC §9): SSE event by event, 50 MB both ways with bounded server
memory, and the request body cap."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
from helpers import assert_error, unique
from upstream import MIB, download_sha256

TRANSFER_MB = 50
RSS_BUDGET_MB = 60


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread; ``growth_mb`` is peak minus baseline."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.baseline = self._rss_kb()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss_kb(self) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss_kb())
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._rss_kb())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 1024


def server_pid(proxy_env) -> int:
    assert proxy_env.server.proc is not None
    return proxy_env.server.proc.pid


# --------------------------------------------------------------------------- SSE


def test_sse_events_arrive_one_by_one(proxy_env):
    name, _ = proxy_env.bearer()
    assert proxy_env.call("GET", name, "/echo").status_code == 200  # warm the upstream connection
    resp, chunks = proxy_env.stream("GET", name, "/sse", params={"n": 5, "delay": 0.5})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    arrivals: list[float] = []
    buffer = b""
    for at, chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            _event, buffer = buffer.split(b"\n\n", 1)
            arrivals.append(at)
    assert len(arrivals) == 5, f"events: {len(arrivals)} body={b''.join(c for _, c in chunks)!r}"
    print(f"SSE arrivals through the proxy (s): {[round(a, 3) for a in arrivals]}")
    assert arrivals[0] < 1.0, f"first event after {arrivals[0]:.2f}s: the proxy buffered the stream"
    assert arrivals[-1] >= 2.0
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) > 0.25, f"events were batched: gaps {gaps}"


def test_sse_with_redaction_off_also_streams(proxy_env):
    name, _ = proxy_env.bearer(redact_responses=False)
    resp, chunks = proxy_env.stream("GET", name, "/sse", params={"n": 3, "delay": 0.6})
    assert resp.status_code == 200
    assert chunks and chunks[0][0] < 1.0
    assert chunks[-1][0] >= 1.1
    assert b"".join(c for _, c in chunks).count(b"event: tick") == 3


# --------------------------------------------------------------------------- 50 MB both ways


def test_50mb_download_streams_with_bounded_memory(proxy_env):
    name, _ = proxy_env.bearer()
    assert proxy_env.call("GET", name, "/big-download", params={"mb": 1}).status_code == 200  # warm up
    digest, length = hashlib.sha256(), 0
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {proxy_env.token()}"}
    with (
        RssSampler(server_pid(proxy_env)) as rss,
        httpx.Client(timeout=60.0) as client,
        client.stream("GET", proxy_env.url(name, f"/big-download?mb={TRANSFER_MB}"), headers=headers) as resp,
    ):
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            digest.update(chunk)
            length += len(chunk)
    elapsed = time.monotonic() - started
    proxy_env.record(resp, b"")  # headers only: the body is pseudo-random bytes
    print(
        f"50 MB download: {elapsed:.2f}s, server RSS baseline {rss.baseline / 1024:.1f} MB, "
        f"peak {rss.peak / 1024:.1f} MB, growth {rss.growth_mb:.1f} MB"
    )
    assert length == TRANSFER_MB * MIB
    assert digest.hexdigest() == download_sha256(TRANSFER_MB)
    assert rss.growth_mb < RSS_BUDGET_MB, f"server RSS grew {rss.growth_mb:.1f} MB for a 50 MB download"
    assert elapsed < 20


def test_50mb_upload_streams_with_bounded_memory(proxy_env):
    name, _ = proxy_env.bearer(max_request_mb=60)
    block = hashlib.sha256(b"seed").digest() * (64 * 1024 // 32)
    expected = hashlib.sha256()
    for _ in range(TRANSFER_MB * 16):
        expected.update(block)

    def body():
        for _ in range(TRANSFER_MB * 16):
            yield block

    assert proxy_env.call("POST", name, "/upload", content=b"warm").status_code == 200
    started = time.monotonic()
    with RssSampler(server_pid(proxy_env)) as rss:
        resp = proxy_env.call("POST", name, f"/upload/{unique('big')}", content=body(), timeout=60.0)
    elapsed = time.monotonic() - started
    print(
        f"50 MB upload: {elapsed:.2f}s, server RSS baseline {rss.baseline / 1024:.1f} MB, "
        f"peak {rss.peak / 1024:.1f} MB, growth {rss.growth_mb:.1f} MB"
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"length": TRANSFER_MB * MIB, "sha256": expected.hexdigest()}
    assert rss.growth_mb < RSS_BUDGET_MB, f"server RSS grew {rss.growth_mb:.1f} MB for a 50 MB upload"
    assert elapsed < 20


def test_50mb_upload_with_content_length(proxy_env):
    name, _ = proxy_env.bearer(max_request_mb=60)
    data = hashlib.sha256(b"other").digest() * (TRANSFER_MB * MIB // 32)
    marker = unique("cl")
    resp = proxy_env.call("PUT", name, f"/upload/{marker}", content=data, timeout=60.0)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    seen = proxy_env.upstream.only(marker)
    assert seen.method == "PUT" and seen.body_len == len(data)


# --------------------------------------------------------------------------- request body cap


def test_body_over_default_cap_is_413(proxy_env):
    name, _ = proxy_env.bearer()
    marker = unique("cap")
    resp = proxy_env.call("POST", name, f"/upload/{marker}", content=b"x" * (10 * MIB + 1))
    assert_error(resp, 413)
    assert proxy_env.upstream.matching(marker) == [], "an over-cap body with Content-Length was sent upstream"

    def chunked(total: int):
        sent = 0
        while sent < total:
            size = min(256 * 1024, total - sent)
            sent += size
            yield b"y" * size

    resp = proxy_env.call("POST", name, f"/upload/{unique('cap')}", content=chunked(11 * MIB))
    assert_error(resp, 413)
    # exactly at the cap is fine
    resp = proxy_env.call("POST", name, "/upload", content=b"z" * (10 * MIB))
    assert resp.status_code == 200, resp.text
    assert resp.json()["length"] == 10 * MIB
    statuses = [e["status"] for e in proxy_env.proxy_audit(name)]
    assert statuses.count(413) == 2


def test_chunked_body_over_cap_after_the_upstream_answered_is_cut_not_complete(proxy_env):
    """The upstream starts its answer before reading the body; the cap hits later: the caller must see a
    broken response (or a 413), never a complete-looking 200."""
    name, _ = proxy_env.bearer(max_request_mb=1)

    def chunked(total: int):
        for _ in range(total // (64 * 1024)):
            yield b"q" * (64 * 1024)
            time.sleep(0.002)

    try:
        resp = proxy_env.call("POST", name, "/answer-early", content=chunked(3 * MIB))
    except httpx.HTTPError:
        resp = None  # the connection was cut mid-answer: what we want
    if resp is not None:
        assert resp.status_code == 413 or "body bytes" not in resp.text, resp.text
    time.sleep(0.3)
    line = proxy_env.proxy_audit(name)[-1]
    assert line["status"] == 413 or "request body over 1 MiB" in line.get("error", "")


def test_abandoned_stream_ends_the_upstream_request(proxy_env):
    """An agent that stops reading an LLM stream must not leave the upstream generating: the vault ends
    the upstream request within about a second of the caller going away."""
    name, _ = proxy_env.bearer()
    marker = unique("hang")
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "GET", proxy_env.url(name, f"/hang?m={marker}"), headers={"Authorization": f"Bearer {proxy_env.token()}"}
        ) as resp,
    ):
        assert resp.status_code == 200
        next(resp.iter_bytes())
        left = time.monotonic()
    deadline = time.monotonic() + 10
    while marker not in proxy_env.upstream.hang_gone and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in proxy_env.upstream.hang_gone, "the upstream request stayed open after the caller left"
    assert proxy_env.upstream.hang_gone[marker] - left < 3.0
    time.sleep(0.2)
    line = proxy_env.proxy_audit(name)[-1]
    assert line.get("error") == "caller went away while waiting for the upstream"


def test_per_service_cap_overrides_default(proxy_env):
    small, _ = proxy_env.bearer(max_request_mb=1)
    assert_error(proxy_env.call("POST", small, "/upload", content=b"x" * (MIB + 10)), 413)
    assert proxy_env.call("POST", small, "/upload", content=b"x" * MIB).status_code == 200
    large, _ = proxy_env.bearer(max_request_mb=20)
    assert proxy_env.call("POST", large, "/upload", content=b"x" * (15 * MIB)).json()["length"] == 15 * MIB


def test_server_wide_cap_flag(start_server, upstream, secrets):
    server = start_server("--ca-file", str(upstream.ca_path), "--allow-private", "127.0.0.0/8", max_request_mb=2)
    server.unlock(secrets.new("master-pw"))
    upstream.forbidden.add(server.admin_token)
    token = secrets.new("bearer")
    name = unique("svc")
    body = {"name": name, "base_url": upstream.url, "auth": {"type": "bearer", "token": token}}
    assert server.http.post("/services", json=body, headers=server.admin_headers()).status_code == 201
    url = f"/proxy/{name}/upload"
    resp = server.http.post(url, content=b"a" * (3 * MIB), headers=server.admin_headers())
    assert_error(resp, 413)
    resp = server.http.post(url, content=b"a" * (2 * MIB - 100), headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
