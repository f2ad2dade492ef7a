"""A vault-server started as a bare subprocess (for start-up flags and listeners), outside the fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme

SERVER = [sys.executable, "-m", "vault_proxy.server"]


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_PROXY_")}
    full_env.update(env or {})
    return subprocess.Popen(
        [*SERVER, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
        start_new_session=True,
    )  # fmt: skip


def wait_health(client: httpx.Client, url: str, proc: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            return client.get(url)
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("server did not become ready")


def stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM (SIGKILL after 15 s); returns (exit code, seconds it took, everything it printed)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, time.monotonic() - started, out


def write_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A fresh CA and a 127.0.0.1 server certificate from it: (cert.pem, key.pem, ca.pem) in ``directory``."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_pem = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    return cert, key, ca_pem
