#!/usr/bin/env python3
"""Noise-free cost per proxied request: CPU instructions counted by valgrind (callgrind), not time.

On a shared 2-core VM the req/s of bench/proxy.py swing by +-15 % between runs; instruction counts do
not (the same run twice agrees within 0.1 %). This runs the bare forwarder and vault-server (same
service, same upstream as bench/proxy.py) under callgrind with instrumentation off, switches it on for
exactly N proxied requests (5 concurrent keep-alive connections), and reports user-space instructions
per request and vault-proxy's cost relative to the bare forwarder. Kernel time (the loopback sockets,
the same for both) is not counted, so the req/s ratio on a quiet machine is a little better than this.

Usage: bench/proxy_cost.py [--requests N] [--keep DIR]   (needs valgrind: installed from Debian if root; ~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import HOST, Procs, ensure_debian_binary, free_port  # noqa: E402
from proxy import BENCH_DIR, SERVICE_TOKEN, start_upstream, vault_server_cmd  # noqa: E402

WARMUP = 100


async def drive(url: str, headers: dict[str, str], count: int, conns: int = 5) -> None:
    """Exactly ``count`` GETs over ``conns`` keep-alive connections; every answer must be 200."""
    left = count
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}")

        await asyncio.gather(*(worker() for _ in range(conns)))


def instructions(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def measure(procs: Procs, root: Path, name: str, server_cmd: list[str], setup, count: int) -> float:
    port = free_port()
    out = root / f"{name}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc = procs.start(name, [*valgrind, *[a.replace("{port}", str(port)) for a in server_cmd]], port)
    url, headers = setup(port)
    asyncio.run(drive(url, headers, WARMUP))
    control = ["callgrind_control"]
    subprocess.run([*control, "-i", "on", str(proc.pid)], check=True, capture_output=True)
    asyncio.run(drive(url, headers, count))
    subprocess.run([*control, "-i", "off", str(proc.pid)], check=True, capture_output=True)
    subprocess.run([*control, "-d", str(proc.pid)], check=True, capture_output=True)  # writes <out>.1
    proc.stop()
    dump = out.with_name(out.name + ".1")  # the on-demand dump; ``out`` itself is the (empty) exit dump
    if not dump.exists():
        raise RuntimeError(f"callgrind wrote no dump for {name}")
    return instructions(dump) / count


def vault_setup(root: Path, up_port: int):
    def setup(port: int) -> tuple[str, dict[str, str]]:
        service = {"name": "bench", "base_url": f"http://{HOST}:{up_port}", "tls_skip_verify": True,
                   "auth": {"type": "bearer", "token": SERVICE_TOKEN}}  # fmt: skip
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120.0, trust_env=False) as http:
            admin = http.post("/auth/unlock", json={"password": os.urandom(12).hex()}).raise_for_status().json()["id"]
            auth = {"Authorization": f"Bearer {admin}"}
            http.post("/services", json=service, headers=auth).raise_for_status()
            token = http.post("/tokens", json={"scope": "proxy"}, headers=auth).raise_for_status().json()["id"]
        return f"http://{HOST}:{port}/proxy/bench/small", {"Authorization": f"Bearer {token}"}

    return setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests counted per target (default 400)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install valgrind")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    if not ensure_debian_binary("valgrind", "valgrind", not args.no_install):
        print("valgrind is not installed (run as root to let the bench install it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="proxy-cost-") as tmp, Procs(Path(tmp)) as procs:
        root = Path(tmp)
        up_port = start_upstream(procs)
        bare_cmd = [sys.executable, str(BENCH_DIR / "bare_forwarder.py"), "{port}", f"http://{HOST}:{up_port}",
                    SERVICE_TOKEN]  # fmt: skip
        vault_cmd = [*vault_server_cmd(), "--listen", f"{HOST}:{{port}}", "--data-dir", str(root / "data"),
                     "--allow-private", "127.0.0.0/8"]  # fmt: skip
        bare = measure(procs, root, "bare-forwarder", bare_cmd,
                       lambda port: (f"http://{HOST}:{port}/small", {"Authorization": "Bearer x"}), args.requests)  # fmt: skip
        vault = measure(procs, root, "vault-proxy", vault_cmd, vault_setup(root, up_port), args.requests)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in root.glob("*.callgrind.1"):
                shutil.copy(dump, args.keep / dump.name)
    print(f"instructions per proxied request ({args.requests} requests, 5 connections, callgrind):")
    print(f"  bare forwarder  {bare / 1000:8.0f} k")
    print(f"  vault-proxy     {vault / 1000:8.0f} k   (+{(vault - bare) / 1000:.0f} k: auth, policy, scrubbing, audit)")
    print(f"  bare / vault-proxy = {bare / vault * 100:.1f} %  (the req/s share a CPU-bound run would show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
