"""Load soak (issue: reliability evidence): N connections of proxied requests for a bounded time against the
local HTTPS upstream; zero errors, flat RSS, no file-descriptor growth.

The default run is short (``VAULT_SOAK_SECONDS``, 15 s) so ``make test`` stays quick; ``make soak`` runs
60 s. The report line (requests, errors, req/s, RSS and fds at start and end) is printed for
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp

SOAK_SECONDS = float(os.environ.get("VAULT_SOAK_SECONDS", "15"))
CONNECTIONS = int(os.environ.get("VAULT_SOAK_CONNECTIONS", "100"))
WARMUP_SECONDS = min(3.0, SOAK_SECONDS / 5)
MAX_REQUESTS = 2_000_000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _soak(url: str, token: str, seconds: float, on_warm) -> tuple[int, list[str]]:
    done, errors = 0, []
    deadline = time.monotonic() + seconds
    warm_at = time.monotonic() + WARMUP_SECONDS
    warmed = False
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as session:

        async def worker() -> None:
            nonlocal done, warmed
            while time.monotonic() < deadline and done < MAX_REQUESTS:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        if resp.status != 200 or b'"method"' not in body:
                            errors.append(f"{resp.status} {body[:80]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(repr(exc))
                done += 1
                if not warmed and time.monotonic() > warm_at:
                    warmed = True
                    on_warm()

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return done, errors


def test_soak_zero_errors_flat_memory_no_fd_growth(proxy_env):
    name, _ = proxy_env.bearer()
    pid = proxy_env.server.proc.pid
    url = proxy_env.url(name, "/echo/soak")
    marks: dict[str, float] = {}

    def warm() -> None:
        marks["rss"], marks["fds"], marks["at"] = _rss_mb(pid), _fds(pid), time.monotonic()

    handshakes_before = proxy_env.upstream.handshakes
    started = time.monotonic()
    done, errors = asyncio.run(_soak(url, proxy_env.token(), SOAK_SECONDS, warm))
    elapsed = time.monotonic() - started
    dialled = proxy_env.upstream.handshakes - handshakes_before  # TLS connections the vault opened
    rss_end, fds_busy = _rss_mb(pid), _fds(pid)
    time.sleep(1.0)  # idle connections to the upstream may close; ours are closed by now
    fds_idle = _fds(pid)
    print(
        f"\nsoak: {SOAK_SECONDS:.0f} s, {CONNECTIONS} connections: {done} requests, {len(errors)} errors, "
        f"{done / elapsed:.0f} req/s; RSS {marks['rss']:.1f} MB after warm-up -> {rss_end:.1f} MB at end; "
        f"fds {marks['fds']} after warm-up -> {fds_busy} at end -> {fds_idle} idle; "
        f"upstream connections dialled: {dialled} ({dialled * 1000 / max(done, 1):.1f} per 1,000 requests)"
    )
    assert errors == [], errors[:5]
    assert done > CONNECTIONS
    assert rss_end - marks["rss"] < 10, "RSS kept growing under a steady load"
    # The pool keeps as many idle connections as ran at once: no redial every few requests (#16).
    assert dialled <= 2 * CONNECTIONS, f"{dialled} upstream connections dialled for {done} requests"
    assert fds_idle <= marks["fds"] + 5, "file descriptors leaked"
    statuses = {line["status"] for line in proxy_env.proxy_audit(name)}
    assert statuses == {200}
