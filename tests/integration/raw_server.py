"""A vault-server started as a bare subprocess (for start-up flags and listeners), outside the fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

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
