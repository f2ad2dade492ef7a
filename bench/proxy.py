#!/usr/bin/env python3
"""Benchmark the HTTP proxy: direct vs a bare aiohttp forwarder vs vault-proxy vs nginx, all on loopback.

One run starts a plain-HTTP aiohttp upstream (one process, uvloop), the bare forwarder (bench/bare_forwarder.py),
vault-server (temp data dir, ``--allow-private 127.0.0.0/8``, one bearer service) and nginx (Debian package,
foreground, own temp prefix), then measures for each target: latency p50/p99 at 1 connection (sequential,
keep-alive), req/s at 50 connections, SSE time-to-first-event, and the proxy process's RSS growth during one
50 MiB streamed download. Every loop is bounded in count and time; every process started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import HOST, Procs, cpu_seconds, cpu_ticks, ensure_debian_binary, free_port, proc_status_kib, reset_peak_rss  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_TOKEN = "bench-secret-token-123"  # what the upstream expects; only direct calls and the proxies send it
CALLER_TOKEN = "caller-token-the-proxy-must-replace-0123"  # what callers of the bare forwarder and nginx send
CHUNK = 64 * 1024
MIB = 1024 * 1024
NAN = float("nan")
SSE_EVENTS, SSE_GAP = 5, 0.1
WRK_MARK = "WRKLIMIT"

WRK_LUA = r"""
local limit, n = 0, 0
function init(args)
  limit = tonumber(args[1] or "0")
  if limit > 0 then
    response = function(status, headers, body)
      n = n + 1
      if n == limit then
        io.stdout:write("WRKLIMIT\n"); io.stdout:flush()
        wrk.thread:stop()
      end
    end
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d}\n', summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


# --------------------------------------------------------------------------------------------- upstream


def _small_body(ok: bool) -> bytes:
    doc = {"ok": ok, "id": "chatcmpl-bench", "object": "bench.small", "model": "bench-model",
           "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}}  # fmt: skip
    raw = json.dumps(doc, separators=(",", ":"))
    return json.dumps({**doc, "pad": "x" * max(0, 200 - len(raw) - 9)}, separators=(",", ":")).encode()


def upstream_app() -> web.Application:
    """GET /small (~200 B JSON), /sse (5 events 100 ms apart), /big?mb=N (N MiB in 64 KiB chunks).

    Each route answers 401 unless ``Authorization: Bearer <SERVICE_TOKEN>`` arrived, so a proxy that fails to
    inject shows up as errors."""
    expected, ok_body, bad_body = f"Bearer {SERVICE_TOKEN}", _small_body(True), _small_body(False)
    blob = os.urandom(CHUNK)

    async def small(request: web.Request) -> web.Response:
        good = request.headers.get("Authorization") == expected
        return web.Response(body=ok_body if good else bad_body, status=200 if good else 401,
                            content_type="application/json")  # fmt: skip

    async def sse(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i in range(SSE_EVENTS):
            if i:
                await asyncio.sleep(SSE_GAP)
            await response.write(f'id: {i}\nevent: tick\ndata: {{"n": {i}}}\n\n'.encode())
        await response.write_eof()
        return response

    async def big(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        mb = min(max(int(request.query.get("mb", "50")), 1), 1024)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = mb * MIB
        await response.prepare(request)
        for _ in range(mb * MIB // CHUNK):
            await response.write(blob)
        await response.write_eof()
        return response

    app = web.Application()
    app.add_routes([web.get("/small", small), web.get("/sse", sse), web.get("/big", big)])
    return app


def serve_upstream(port: int) -> None:
    web.run_app(upstream_app(), host=HOST, port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


# --------------------------------------------------------------------------------------------- targets


@dataclass
class Result:
    p50: float = NAN  # seconds
    p99: float = NAN
    n_lat: int = 0
    n_rps: int = 0
    lat_rounds: list[tuple[float, float]] = field(default_factory=list)  # (p50, p99) per round
    rps_rounds: list[float] = field(default_factory=list)
    rps_seconds: float = 0.0
    cpu_user_s: float = 0.0  # the serving process's CPU during the c=conns rounds
    cpu_sys_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.n_rps / self.rps_seconds if self.rps_seconds else NAN

    @property
    def cpu_user(self) -> float:  # seconds per request
        return self.cpu_user_s / self.n_rps if self.n_rps else NAN

    @property
    def cpu_sys(self) -> float:
        return self.cpu_sys_s / self.n_rps if self.n_rps else NAN

    errors: int = 0
    ttfe: list[float] = field(default_factory=list)
    rss_before: int = 0  # bytes
    rss_peak: int = 0
    rss_method: str = ""
    download_s: float = NAN


@dataclass
class Target:
    name: str
    base: str  # URL prefix; the upstream paths are appended
    headers: dict[str, str]
    pid: int | None
    note: str = ""  # why the row is empty
    result: Result = field(default_factory=Result)

    def url(self, path: str) -> str:
        return self.base + path


def start_upstream(procs: Procs) -> int:
    port = free_port()
    procs.start("upstream", [sys.executable, str(Path(__file__).resolve()), "--serve-upstream", str(port)], port)
    return port


def direct_target(procs: Procs, up_port: int) -> Target:
    pid = procs.procs[-1].pid
    return Target("direct", f"http://{HOST}:{up_port}", {"Authorization": f"Bearer {SERVICE_TOKEN}"}, pid)


def bare_target(procs: Procs, up_port: int) -> Target:
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "bare_forwarder.py"), str(port), f"http://{HOST}:{up_port}", SERVICE_TOKEN]
    proc = procs.start("bare-forwarder", cmd, port)
    return Target("bare forwarder", f"http://{HOST}:{port}", {"Authorization": f"Bearer {CALLER_TOKEN}"}, proc.pid)


def nginx_target(procs: Procs, up_port: int, root: Path, install: bool) -> Target:
    headers = {"Authorization": f"Bearer {CALLER_TOKEN}"}
    binary = ensure_debian_binary("nginx", "nginx", install)
    if binary is None:
        why = "nginx not installed (run as root to let the bench apt-get install it, or install nginx)"
        print(f"  skipping nginx: {why}")
        return Target("nginx", "", headers, None, note=why)
    prefix, port = root / "nginx", free_port()
    prefix.mkdir()
    conf = (BENCH_DIR / "nginx_proxy.conf.template").read_text()
    for key, value in {"PREFIX": str(prefix), "UPSTREAM_PORT": str(up_port), "PORT": str(port),
                       "TOKEN": SERVICE_TOKEN}.items():  # fmt: skip
        conf = conf.replace(f"@{key}@", value)
    (prefix / "nginx.conf").write_text(conf)
    cmd = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    proc = procs.start("nginx", cmd, port)
    return Target("nginx", f"http://{HOST}:{port}", headers, proc.pid)


def vault_server_cmd() -> list[str]:
    script = Path(sys.executable).with_name("vault-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vault_proxy.server"]


def vault_target(procs: Procs, up_port: int, root: Path) -> Target:
    port, data = free_port(), root / "vault-data"
    cmd = [*vault_server_cmd(), "--listen", f"{HOST}:{port}", "--data-dir", str(data), "--allow-private",
           "127.0.0.0/8"]  # fmt: skip
    proc = procs.start("vault-server", cmd, port)
    service = {"name": "bench", "base_url": f"http://{HOST}:{up_port}", "tls_skip_verify": True,
               "auth": {"type": "bearer", "token": SERVICE_TOKEN}}  # fmt: skip
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30.0, trust_env=False) as http:
        admin = _expect(http.post("/auth/unlock", json={"password": os.urandom(12).hex()}), 200, "unlock")["id"]
        auth = {"Authorization": f"Bearer {admin}"}
        _expect(http.post("/services", json=service, headers=auth), 201, "add service")
        token = _expect(http.post("/tokens", json={"scope": "proxy"}, headers=auth), 201, "proxy token")["id"]
    return Target("vault-proxy", f"http://{HOST}:{port}/proxy/bench", {"Authorization": f"Bearer {token}"}, proc.pid)


def _expect(resp: httpx.Response, status: int, what: str) -> dict:
    if resp.status_code != status:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} (expected {status}) {resp.text[:200]}")
    return resp.json()


def check_target(target: Target) -> None:
    """One GET /small: must be 200 with the upstream's "ok" body (the credential arrived)."""
    if target.note:
        return
    try:
        resp = httpx.get(target.url("/small"), headers=target.headers, timeout=10.0, trust_env=False)
    except httpx.HTTPError as exc:
        target.note = f"GET /small failed: {type(exc).__name__}: {exc}"
    else:
        if resp.status_code != 200 or b'"ok":true' not in resp.content:
            target.note = f"GET /small answered HTTP {resp.status_code}: {resp.text[:120]!r}"
    if target.note:
        print(f"  {target.name}: {target.note}; row skipped", flush=True)


# --------------------------------------------------------------------------------------------- load clients


@dataclass
class Load:
    requests: int
    seconds: float
    p50: float
    p99: float
    errors: int


async def wrk_load(wrk: str, lua: Path, url: str, headers: dict[str, str], conns: int, seconds: float,
                   limit: int) -> Load:  # fmt: skip
    """wrk with one thread; with ``limit`` > 0 (only for conns=1) it stops after that many responses."""
    cmd = [wrk, "-t1", f"-c{conns}", f"-d{max(1, math.ceil(seconds))}s", "--timeout", "10s", "-s", str(lua)]
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}"]
    cmd += [url, "--", str(limit)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines = []
    try:
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            lines.append(line)
            if line == WRK_MARK and proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # wrk's main thread sleeps out -d otherwise
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        await proc.wait()
    found = [json.loads(line[8:]) for line in lines if line.startswith("WRKJSON ")]
    if not found:
        raise RuntimeError("wrk failed: " + " | ".join(lines[-5:]))
    r = found[0]
    return Load(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1e6, r["p99_us"] / 1e6, r["errors"])


async def aiohttp_load(url: str, headers: dict[str, str], conns: int, seconds: float, limit: int) -> Load:
    """The same with an aiohttp client in this process (uvloop); stops at ``limit`` responses or ``seconds``."""
    samples: list[float] = []
    errors = 0
    cap = limit if limit > 0 else 10**9
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while len(samples) < cap and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    errors += resp.status >= 400
                samples.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - t0
    return Load(len(samples), elapsed, pct(samples, 50), pct(samples, 99), errors)


def pct(samples: list[float], q: float) -> float:  # nearest rank
    return sorted(samples)[max(0, math.ceil(q / 100 * len(samples)) - 1)] if samples else NAN


class LoadClient:
    def __init__(self, kind: str, root: Path) -> None:
        self.kind, self.wrk, self.lua = kind, None, root / "bench.lua"
        if kind == "wrk":
            self.wrk = shutil.which("wrk")
            self.lua.write_text(WRK_LUA)

    async def run(self, url: str, headers: dict[str, str], conns: int, seconds: float, limit: int = 0) -> Load:
        if self.wrk:
            return await wrk_load(self.wrk, self.lua, url, headers, conns, seconds, limit)
        return await aiohttp_load(url, headers, conns, seconds, limit)


def pick_client(choice: str, root: Path, install: bool) -> LoadClient:
    if choice in ("auto", "wrk"):
        if ensure_debian_binary("wrk", "wrk", install):
            return LoadClient("wrk", root)
        print(f"  wrk not available{' (need root to install it)' if install else ''}: using the aiohttp client")
    return LoadClient("aiohttp", root)


# --------------------------------------------------------------------------------------------- measurements


async def measure_latency(client: LoadClient, target: Target, args: argparse.Namespace, rnd: int) -> None:
    """One round of sequential requests at c=1 (the warm-up before the first); p50/p99 are medians over rounds."""
    url, res = target.url("/small"), target.result
    if rnd == 0:
        await client.run(url, target.headers, 1, args.stage_budget, args.warmup)
    load = await client.run(url, target.headers, 1, args.stage_budget, max(1, args.requests // args.rounds))
    res.lat_rounds.append((load.p50, load.p99))
    res.n_lat, res.errors = res.n_lat + load.requests, res.errors + load.errors
    res.p50, res.p99 = med([r[0] for r in res.lat_rounds]), med([r[1] for r in res.lat_rounds])
    print(f"  {target.name:15} c=1 round {rnd + 1}: p50 {ms(load.p50)} ms, p99 {ms(load.p99)} ms, n={load.requests}",
          flush=True)  # fmt: skip


async def measure_throughput(client: LoadClient, target: Target, args: argparse.Namespace, rnd: int) -> None:
    """One round of load at c=conns; req/s and CPU per request add up over the rounds."""
    url, res = target.url("/small"), target.result
    if rnd == 0:
        await client.run(url, target.headers, args.conns, 1.0)  # warm-up: opens the pools
    assert target.pid is not None
    user0, sys0 = cpu_seconds(target.pid)
    load = await client.run(url, target.headers, args.conns, args.seconds / args.rounds)
    user1, sys1 = cpu_seconds(target.pid)
    res.rps_rounds.append(load.requests / load.seconds)
    res.n_rps, res.rps_seconds = res.n_rps + load.requests, res.rps_seconds + load.seconds
    res.cpu_user_s, res.cpu_sys_s = res.cpu_user_s + user1 - user0, res.cpu_sys_s + sys1 - sys0
    res.errors += load.errors
    print(f"  {target.name:15} c={args.conns} round {rnd + 1}: {res.rps_rounds[-1]:,.0f} req/s over {load.seconds:.1f} s "
          f"(n={load.requests}, p99 {ms(load.p99)} ms, errors {load.errors}, "
          f"CPU/req {us((user1 - user0) / max(1, load.requests))} us user + "
          f"{us((sys1 - sys0) / max(1, load.requests))} us sys)", flush=True)  # fmt: skip


async def sse_once(session: aiohttp.ClientSession, target: Target) -> tuple[float, float]:
    """Seconds to the first complete event, and to the end of the stream."""
    t0 = time.perf_counter()
    first, buf = NAN, b""
    async with session.get(target.url("/sse"), headers=target.headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"/sse answered HTTP {resp.status}")
        async for chunk in resp.content.iter_any():
            buf += chunk
            if math.isnan(first) and b"\n\n" in buf:
                first = time.perf_counter() - t0
    if buf.count(b"data:") != SSE_EVENTS:
        raise RuntimeError(f"/sse delivered {buf.count(b'data:')} events, expected {SSE_EVENTS}")
    return first, time.perf_counter() - t0


async def measure_sse(target: Target, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        await sse_once(session, target)  # warm-up
        deadline = time.monotonic() + args.stage_budget
        for _ in range(args.sse_runs):
            if time.monotonic() > deadline:
                break
            first, _total = await sse_once(session, target)
            target.result.ttfe.append(first)
    print(f"  {target.name:15} SSE: TTFE median {ms(med(target.result.ttfe))} ms "
          f"(n={len(target.result.ttfe)}, max {ms(max(target.result.ttfe, default=NAN))} ms)", flush=True)  # fmt: skip


async def measure_rss(target: Target, args: argparse.Namespace) -> None:
    """RSS of the serving process before one streamed download, and its peak (VmHWM, reset first) during it."""
    pid, res = target.pid, target.result
    assert pid is not None
    res.rss_before = proc_status_kib(pid)["VmRSS"] * 1024
    reset = reset_peak_rss(pid)
    sampled = [res.rss_before]
    done = asyncio.Event()

    async def sampler() -> None:  # fallback when VmHWM cannot be reset
        while not done.is_set():
            sampled.append(proc_status_kib(pid)["VmRSS"] * 1024)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sampler())
    got = 0
    t0 = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=args.stage_budget)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(target.url(f"/big?mb={args.big_mb}"), headers=target.headers) as resp,
        ):
            async for chunk in resp.content.iter_any():
                got += len(chunk)
    finally:
        done.set()
        await task
    res.download_s = time.perf_counter() - t0
    hwm = proc_status_kib(pid)["VmHWM"] * 1024
    res.rss_peak = max(hwm, *sampled) if reset else max(sampled)
    res.rss_method = "VmHWM" if reset else "sampled VmRSS"
    if got != args.big_mb * MIB:
        raise RuntimeError(f"{target.name}: /big delivered {got} bytes, expected {args.big_mb * MIB}")
    print(f"  {target.name:15} {args.big_mb} MiB: {res.download_s:.2f} s, RSS {res.rss_before / 1e6:.1f} MB -> "
          f"peak {res.rss_peak / 1e6:.1f} MB ({res.rss_method})", flush=True)  # fmt: skip


async def run_stage(
    title: str, live: list[Target], stage: Callable[[Target, int], Awaitable[None]], rounds: int
) -> None:
    """Each round visits every target, starting one further along, so slow drift of the machine hits all alike."""
    print(f"stage: {title}", flush=True)
    for rnd in range(rounds):
        for target in live[rnd % len(live) :] + live[: rnd % len(live)]:
            try:
                await stage(target, rnd)
            except Exception as exc:  # noqa: BLE001 - one target's failure must not lose the others' numbers
                print(f"  {target.name}: {title} failed: {type(exc).__name__}: {exc}", flush=True)
                target.result.errors += 1


async def run_measurements(targets: list[Target], client: LoadClient, args: argparse.Namespace) -> None:
    live = [t for t in targets if not t.note]
    await run_stage("latency at 1 connection", live, lambda t, r: measure_latency(client, t, args, r), args.rounds)
    await run_stage(f"throughput at {args.conns} connections", live,
                    lambda t, r: measure_throughput(client, t, args, r), args.rounds)  # fmt: skip
    await run_stage("SSE time to first event", live, lambda t, _r: measure_sse(t, args), 1)
    await run_stage(f"RSS during a {args.big_mb} MiB download", live, lambda t, _r: measure_rss(t, args), 1)


# --------------------------------------------------------------------------------------------- report


def med(samples: list[float]) -> float:
    return statistics.median(samples) if samples else NAN


def ms(seconds: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"


def us(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e6:.0f}"


def mb(nbytes: float) -> str:
    return "n/a" if not nbytes else f"{nbytes / 1e6:.1f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *map(line, rows)])


def target_row(t: Target, direct: Target, args: argparse.Namespace) -> list[str]:
    r = t.result
    if t.note and not r.n_lat:
        return [t.name, *["—"] * 9, "skipped"]
    added = "—" if t is direct else ms(r.p50 - direct.result.p50)
    growth = r.rss_peak - r.rss_before if r.rss_peak else 0.0
    return [t.name, ms(r.p50), ms(r.p99), added, "n/a" if math.isnan(r.rps) else f"{r.rps:,.0f}",
            f"{us(r.cpu_user)} + {us(r.cpu_sys)}",
            ms(med(r.ttfe), 2), mb(r.rss_before), f"{growth / 1e6:+.1f}" if r.rss_peak else "n/a",
            "n/a" if math.isnan(r.download_s) else f"{args.big_mb / r.download_s:,.0f}", str(r.errors)]  # fmt: skip


def num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "MET" if ok else "MISSED"


def target_lines(by: dict[str, Target]) -> list[str]:
    direct, bare, vault = by["direct"].result, by["bare forwarder"].result, by["vault-proxy"].result
    have = not by["vault-proxy"].note or vault.n_lat
    share = vault.rps / bare.rps * 100 if have and bare.rps else NAN
    extra = (vault.p50 - direct.p50) - (bare.p50 - direct.p50) if have else NAN
    sse = med(vault.ttfe) - med(direct.ttfe) if have else NAN
    growth = (vault.rss_peak - vault.rss_before) / 1e6 if have and vault.rss_peak else NAN

    def check(value: float, ok: bool) -> str:
        return verdict(None if math.isnan(value) else ok)

    return [
        f"vault-proxy req/s = {num(share)} % of the bare forwarder's (target >= 85 %): {check(share, share >= 85)}",
        f"vault-proxy added p50 - bare added p50 = {ms(extra)} ms (target <= 0.150 ms): {check(extra, extra <= 0.15e-3)}",
        f"vault-proxy SSE TTFE - direct = {ms(sse, 2)} ms (target <= 5 ms): {check(sse, sse <= 5e-3)}",
        f"vault-proxy RSS growth during the stream = {num(growth)} MB (target <= 30 MB): {check(growth, growth <= 30)}",
    ]  # fmt: skip


def round_spread(by: dict[str, Target]) -> str:
    """The vault-proxy/bare ratios round by round (each round measured both within seconds of each other)."""
    direct, bare, vault = by["direct"].result, by["bare forwarder"].result, by["vault-proxy"].result
    shares = [f"{v / b * 100:.0f} %" for v, b in zip(vault.rps_rounds, bare.rps_rounds, strict=False) if b]
    extras = [ms(v[0] - b[0]) for v, b in zip(vault.lat_rounds, bare.lat_rounds, strict=False)]
    directs = [ms(d[0]) for d in direct.lat_rounds]
    return (
        f"req/s share {', '.join(shares) or 'n/a'}; p50 vault - bare {', '.join(extras) or 'n/a'} ms; "
        f"direct p50 {', '.join(directs)} ms"
    )


def report(targets: list[Target], client: LoadClient, args: argparse.Namespace) -> None:
    by = {t.name: t for t in targets}
    direct = by["direct"]
    headers = ["target", "p50 ms", "p99 ms", "added p50 ms", f"req/s c={args.conns}",
               "CPU us/req usr + sys", "SSE TTFE ms",
               "RSS before MB", f"RSS growth MB ({args.big_mb} MiB)", "MiB/s", "errors"]  # fmt: skip
    rows = [target_row(t, direct, args) for t in targets]
    print(f"\n== HTTP proxy on loopback, plain HTTP upstream; load client: {client.kind} "
          f"(c=1: {args.requests} sequential requests after {args.warmup} warm-up; c={args.conns}: {args.seconds:g} s; "
          f"both in {args.rounds} interleaved round(s), p50/p99 = median over rounds)")  # fmt: skip
    print(table(headers, rows))
    for t in targets:
        if t.note:
            print(f"  {t.name}: {t.note}")
    print("\nTargets (issue 3):")
    for line in target_lines(by):
        print("  " + line)
    print("  per round: " + round_spread(by))
    print(f"  context: bare added p50 {ms(by['bare forwarder'].result.p50 - direct.result.p50)} ms; nginx added p50 "
          f"{ms(by['nginx'].result.p50 - direct.result.p50)} ms; RSS peak via {by['vault-proxy'].result.rss_method or 'n/a'}")  # fmt: skip


# --------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter run: 500 requests, 3 s at c=50, 3 SSE runs")
    parser.add_argument("--requests", type=int, help="sequential requests timed at c=1 (default 2000, quick 500)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests before them (default 200)")
    parser.add_argument("--conns", type=int, default=50, help="connections for the req/s stage (default 50)")
    parser.add_argument("--seconds", type=float, help="seconds of load at --conns (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds the c=1 and c=50 stages are split into (default 4, quick 1)")
    parser.add_argument("--sse-runs", type=int, help="SSE runs per target (default 10, quick 3)")
    parser.add_argument("--big-mb", type=int, default=50, help="MiB streamed for the RSS stage (default 50)")
    parser.add_argument("--client", choices=["auto", "wrk", "aiohttp"], default="auto",
                        help="load client: wrk (Debian, installed if root) or aiohttp in this process")  # fmt: skip
    parser.add_argument("--no-install", action="store_true", help="never apt-get install nginx/wrk")
    parser.add_argument("--stage-budget", type=float, default=60.0, help="seconds before a stage gives up")
    parser.add_argument("--skip", default="", help="comma list of targets not to start: vault, nginx")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.requests = max(1, args.requests or (500 if args.quick else 2000))
    args.seconds = max(1.0, args.seconds or (3.0 if args.quick else 10.0))
    args.sse_runs = max(1, args.sse_runs or (3 if args.quick else 10))
    args.rounds = max(1, args.rounds or (1 if args.quick else 4))
    return args


def optional_target(name: str, skipped: bool, start: Callable[[], Target]) -> Target:
    """Start a target that may be missing or broken; the run goes on with its row marked."""
    if skipped:
        return Target(name, "", {}, None, note="skipped (--skip)")
    try:
        return start()
    except (RuntimeError, OSError, KeyError, httpx.HTTPError) as exc:
        print(f"  {name}: could not start: {exc}", flush=True)
        return Target(name, "", {}, None, note=f"could not start: {str(exc).splitlines()[0][:200]}")


def start_targets(procs: Procs, root: Path, args: argparse.Namespace) -> list[Target]:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    up_port = start_upstream(procs)
    targets = [
        direct_target(procs, up_port),
        bare_target(procs, up_port),
        optional_target("vault-proxy", "vault" in skip, lambda: vault_target(procs, up_port, root)),
        optional_target("nginx", "nginx" in skip, lambda: nginx_target(procs, up_port, root, not args.no_install)),
    ]
    for target in targets:
        check_target(target)
    return targets


def print_header(args: argparse.Namespace) -> None:
    print("command:", shlex.join([sys.executable, *sys.argv]))
    nginx = ensure_debian_binary("nginx", "nginx", False)
    nginx_v = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip() if nginx else "no nginx"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs; aiohttp "
          f"{aiohttp.__version__}, uvloop {uvloop.__version__}; {nginx_v}; {_wrk_version()}")  # fmt: skip
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load}; {_git_state()}", flush=True)
    if os.getloadavg()[0] > 1.5:
        print("  ! the machine is busy (1-min load average > 1.5): numbers from this run will be noisy", flush=True)


def _git_state() -> str:
    """The commit the benchmarked server code comes from, and whether src/ has uncommitted changes."""
    repo = BENCH_DIR.parent
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "git n/a"
    return f"git {rev or 'n/a'}{' + uncommitted changes in src/' if dirty else ''}"


def _wrk_version() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        return "no wrk"
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
    found = re.search(r"wrk \S+", out)
    return found.group(0) if found else "wrk"


def main() -> int:
    args = parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too
    root = Path(tempfile.mkdtemp(prefix="proxy-bench-", dir="/tmp"))
    t_start, ticks_start = time.monotonic(), cpu_ticks()
    try:
        with Procs(root) as procs:
            client = pick_client(args.client, root, not args.no_install)
            print_header(args)
            targets = start_targets(procs, root, args)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run_measurements(targets, client, args))
        report(targets, client, args)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        steal, total = (b - a for a, b in zip(ticks_start, cpu_ticks(), strict=True))
        print(f"\ntotal {time.monotonic() - t_start:.0f} s; load average at end: {load}; "
              f"CPU steal by the VM host during the run: {steal / max(1, total) * 100:.1f} %")  # fmt: skip
        if steal / max(1, total) > 0.02:
            print("  ! the VM host took > 2 % of the CPU (steal): c=1 latencies in particular are unreliable; re-run")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every process the benchmark started has been stopped", file=sys.stderr)
        sys.exit(130)
