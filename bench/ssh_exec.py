#!/usr/bin/env python3
"""What SSH connection reuse saves: exec latency through vault-proxy on a warm vs a fresh connection.

Starts a throwaway OpenSSH sshd (tests/peers/sshd.py; installed by scripts/install-test-peers.sh) and
vault-server on loopback, stores the client key, then times ``POST /ssh/{svc}/exec {"command":"true"}``:
- warm: sequential execs on the pooled connection (median of --execs);
- cold: the first exec after the service is re-posted (a new Service object gets a new connection:
  TCP + key exchange + public-key auth), median of --rounds;
and the same two cases with asyncssh directly (no vault) as the baseline, in the same run.

Usage: bench/ssh_exec.py [--execs 30] [--rounds 8]     (~15 s)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "peers"))
from sshd import Sshd  # noqa: E402

from _procs import HOST, Procs, free_port  # noqa: E402
from proxy import vault_server_cmd  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def through_vault(sshd: Sshd, root: Path, execs: int, rounds: int) -> tuple[list[float], list[float]]:
    with Procs(root) as procs:
        port = free_port()
        procs.start("vault-server", [*vault_server_cmd(), "--listen", f"{HOST}:{port}", "--data-dir",
                                     str(root / "data"), "--allow-private", "127.0.0.0/8"], port)  # fmt: skip
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60.0, trust_env=False) as http:
            admin = http.post("/auth/unlock", json={"password": os.urandom(12).hex()}).raise_for_status().json()["id"]
            auth = {"Authorization": f"Bearer {admin}"}
            http.post("/files", data={"name": "key"}, files={"file": ("key", sshd.client_key_text.encode())},
                      headers=auth).raise_for_status()  # fmt: skip
            service = {"name": "host", "auth": {"type": "ssh_key", "ssh_host": sshd.host, "ssh_port": sshd.port,
                                                "ssh_user": sshd.user, "ssh_key_file_ref": "key"}}  # fmt: skip

            def run() -> float:
                started = time.perf_counter()
                http.post("/ssh/host/exec", json={"command": "true"}, headers=auth).raise_for_status()
                return time.perf_counter() - started

            cold, warm = [], []
            for _ in range(rounds):
                http.post("/services", json=service, headers=auth).raise_for_status()  # new object: new connection
                cold.append(run())
            warm = [run() for _ in range(execs)]
    return cold, warm


async def direct(sshd: Sshd, execs: int, rounds: int) -> tuple[list[float], list[float]]:
    key = asyncssh.import_private_key(sshd.client_key_text)
    options = {"username": sshd.user, "client_keys": [key], "known_hosts": None, "config": None, "agent_path": None}
    cold = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with asyncssh.connect(sshd.host, sshd.port, **options) as conn:
            await conn.run("true", check=True)
        cold.append(time.perf_counter() - started)
    warm = []
    async with asyncssh.connect(sshd.host, sshd.port, **options) as conn:
        for _ in range(execs):
            started = time.perf_counter()
            await conn.run("true", check=True)
            warm.append(time.perf_counter() - started)
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=30, help="warm execs timed (default 30)")
    parser.add_argument("--rounds", type=int, default=8, help="cold execs timed (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ssh-bench-") as tmp:
        sshd = Sshd(Path(tmp) / "sshd").start()
        try:
            base_cold, base_warm = asyncio.run(direct(sshd, args.execs, args.rounds))
            cold, warm = through_vault(sshd, Path(tmp), args.execs, args.rounds)
        finally:
            sshd.stop()
    med = statistics.median
    print(f"exec of `true` on loopback sshd ({args.rounds} cold, {args.execs} warm, medians):")
    print(f"  asyncssh direct   cold (connect+auth+exec) {ms(med(base_cold))}   warm (exec) {ms(med(base_warm))}")
    print(f"  via vault-proxy   cold (first after update) {ms(med(cold))}   warm (pooled) {ms(med(warm))}")
    print(f"  reuse saves {ms(med(cold) - med(warm))} per exec through the vault "
          f"({med(cold) / med(warm):.1f}x); vault overhead on a warm exec {ms(med(warm) - med(base_warm))}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
