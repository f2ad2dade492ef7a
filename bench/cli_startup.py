#!/usr/bin/env python3
"""How long ``vault-cli`` takes per call, for agents that run it in loops (target: health ≤ 150 ms median).

Starts vault-server on loopback, unlocks it, then times whole processes (fork, interpreter, imports,
one or two HTTP calls, exit), median and p90 of --runs each, in one run:
- ``python -c pass`` (the interpreter's floor) and ``python -c "import httpx"`` (the SDK's HTTP stack);
- ``vault-cli health``, ``vault-cli service list`` and ``vault-cli token list --json``.

Usage: bench/cli_startup.py [--runs 30]     (~15 s)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _procs import HOST, Procs, free_port  # noqa: E402
from proxy import vault_server_cmd  # noqa: E402

BIN = Path(sys.executable).parent
DEADLINE_S = 120.0


def timed(cmd: list[str], env: dict[str, str], runs: int, deadline: float) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, check=False)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    deadline = time.monotonic() + DEADLINE_S
    with tempfile.TemporaryDirectory(prefix="vp-bench-cli-") as root, Procs(Path(root)) as procs:
        port = free_port()
        procs.start("vault-server", [*vault_server_cmd(), "--listen", f"{HOST}:{port}", "--data-dir",
                                     str(Path(root) / "data")], port)  # fmt: skip
        addr = f"http://{HOST}:{port}"
        admin = httpx.post(f"{addr}/auth/unlock", json={"password": os.urandom(12).hex()}).json()["id"]
        env = {**os.environ, "VAULT_ADDR": addr, "VAULT_TOKEN": admin, "HOME": root}
        # As on a user's machine: bytecode is cached after the first run (some CI images turn that off).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import httpx'": [sys.executable, "-c", "import httpx"],
            "vault-cli health": [str(BIN / "vault-cli"), "health"],
            "vault-cli service list": [str(BIN / "vault-cli"), "service", "list"],
            "vault-cli token list --json": [str(BIN / "vault-cli"), "token", "list", "--json"],
        }
        print(f"{'command':32} {'median':>9} {'p90':>9}  (runs={args.runs}, wall time per process)")
        for label, cmd in cases.items():
            timed(cmd, env, 2, deadline)  # warm-up: writes __pycache__, fills the page cache
            samples = sorted(timed(cmd, env, args.runs, deadline))
            if not samples:
                break
            p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
            print(f"{label:32} {statistics.median(samples) * 1000:7.1f} ms {p90 * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
