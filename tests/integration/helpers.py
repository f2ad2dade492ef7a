"""Reusable pieces of the integration tests.

* ``ServerHandle`` runs the real server (``python -m vault_proxy.server``) as a subprocess on a free
  loopback port with its own temp data dir, and gives tests an ``httpx.Client`` whose responses are
  recorded.
* ``SecretRegistry`` + ``ResponseRecorder`` implement the leak check: every secret a test uses is
  registered, and at teardown ``find_leaks`` looks for each of them in every recorded response (headers
  and body, except the bodies of ``GET /files/{name}``), in the server log, in the audit log and in the
  raw bytes of every file in the data dir (the vault must be encrypted at rest).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PORT_MIN, PORT_MAX = 20000, 32767  # below the ephemeral range (32768-60999)
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
HEX64 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
FILE_DOWNLOAD = re.compile(r"^/files/[^/]+$")

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


# --------------------------------------------------------------------------- small utilities


def free_port() -> int:
    """A random port in 20000-32767 that binds on 127.0.0.1 right now."""
    for _ in range(500):
        port = random.randint(PORT_MIN, PORT_MAX)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


_TEMP_DIRS: list[Path] = []


def make_temp_dir(prefix: str = "vp-it-") -> Path:
    """A fresh directory under /tmp (short paths keep unix sockets under the 108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _TEMP_DIRS.append(path)
    return path


def remove_temp_dirs() -> None:
    while _TEMP_DIRS:
        shutil.rmtree(_TEMP_DIRS.pop(), ignore_errors=True)


def unique(label: str) -> str:
    """A unique, recognisable, non-secret string (service names, file names)."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --------------------------------------------------------------------------- assertions


def error_message(resp: httpx.Response) -> str:
    """The ``error`` of a JSON error response, after checking the error envelope."""
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error {resp.status_code} has content-type {ctype!r}"
    body = resp.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert isinstance(body.get("error"), str), f"error body has no string 'error': {body!r}"
    assert body["error"], "empty error message"
    return body["error"]


def assert_error(
    resp: httpx.Response,
    status: int,
    message: str | None = None,
    *,
    contains: str | tuple[str, ...] = (),
) -> str:
    """Check status, the JSON error envelope, and optionally the exact message or substrings of it."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    msg = error_message(resp)
    if message is not None:
        assert msg == message, f"expected error {message!r}, got {msg!r}"
    for part in (contains,) if isinstance(contains, str) else contains:
        assert part.lower() in msg.lower(), f"error {msg!r} does not mention {part!r}"
    return msg


def assert_security_headers(resp: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        values = resp.headers.get_list(name)
        assert values == [value], f"{resp.request.method} {resp.request.url.path}: {name} is {values!r}"


# --------------------------------------------------------------------------- leak check


class SecretRegistry:
    """Secrets a test used. ``secrets`` must appear nowhere; ``log_only`` (tokens the vault hands out)
    may be returned to the caller but must never reach a log or the data dir in plaintext."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.log_only: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str) -> str:
        for value in values:
            if len(value) < 8:
                raise ValueError(f"secret {value!r} is too short to be checked reliably")
            with self._lock:
                self.secrets.add(value)
        return values[0]

    def add_log_only(self, value: str) -> None:
        with self._lock:
            self.log_only.add(value)

    def new(self, label: str) -> str:
        """Make, register and return a unique recognisable secret, e.g. ``bearer-SECRET-1a2b3c4d5e6f``."""
        return self.add(f"{label}-SECRET-{uuid.uuid4().hex[:12]}")


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_file_download(self) -> bool:
        return self.method == "GET" and bool(FILE_DOWNLOAD.match(self.path))

    def describe(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


class ResponseRecorder:
    """An httpx response event hook that keeps every response (and registers minted tokens)."""

    def __init__(self, registry: SecretRegistry) -> None:
        self.registry = registry
        self.responses: list[Recorded] = []
        self._lock = threading.Lock()

    def hook(self, response: httpx.Response) -> None:
        response.read()
        raw_path = response.request.url.raw_path.decode("ascii", "replace").split("?", 1)[0]
        record = Recorded(
            method=response.request.method,
            path=raw_path,
            status=response.status_code,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw],
            body=response.content,
        )
        with self._lock:
            self.responses.append(record)
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(response.content)
            except ValueError:
                return
            if isinstance(data, dict) and isinstance(data.get("id"), str) and HEX64.fullmatch(data["id"]):
                self.registry.add_log_only(data["id"])


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except OSError:
        return ""


@dataclass
class LeakScanTotals:
    """What the leak checks of a whole test session looked at (printed at the end of the run)."""

    tests: int = 0
    secrets: int = 0  # distinct secrets searched for, summed over tests
    responses: int = 0
    files: int = 0
    bytes_scanned: int = 0
    hits: int = 0

    def summary(self) -> str:
        return (
            f"leak scan: {self.tests} tests, {self.secrets} secrets searched in {self.responses} responses and "
            f"{self.files} log/audit/data files ({self.bytes_scanned / 1e6:.1f} MB): {self.hits} hits"
        )


LEAK_TOTALS = LeakScanTotals()


def find_leaks(registry: SecretRegistry, recorder: ResponseRecorder, handles: list[ServerHandle]) -> list[str]:
    """Every place a registered secret shows up, as human-readable lines (empty list = no leak)."""
    response_sources: list[tuple[str, str]] = []
    for rec in list(recorder.responses):
        headers = "\n".join(f"{k}: {v}" for k, v in rec.headers)
        response_sources.append((f"response headers of {rec.describe()}", headers))
        if not rec.is_file_download:
            response_sources.append((f"response body of {rec.describe()}", rec.body.decode("latin-1")))

    stored_sources: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for handle in handles:
        paths = [handle.log_path, handle.audit_path, *handle.extra_scanned]
        if handle.data_dir.is_dir():
            paths += sorted(p for p in handle.data_dir.rglob("*") if p.is_file())
        for path in paths:
            resolved = path.resolve()
            if resolved in seen or not path.is_file():
                continue
            seen.add(resolved)
            stored_sources.append((str(path), _read_text(path)))

    problems: list[str] = []

    def scan(values: set[str], sources: list[tuple[str, str]]) -> None:
        haystack = "\x00".join(text for _, text in sources)
        LEAK_TOTALS.bytes_scanned += len(haystack)
        for value in sorted(values):
            if value in haystack:
                where = [name for name, text in sources if value in text]
                problems.append(f"secret {value!r} found in: {', '.join(where[:5])}")

    scan(registry.secrets, response_sources)
    scan(registry.secrets | registry.log_only, stored_sources)
    LEAK_TOTALS.tests += 1
    LEAK_TOTALS.secrets += len(registry.secrets | registry.log_only)
    LEAK_TOTALS.responses += len(recorder.responses)
    LEAK_TOTALS.files += len(stored_sources)
    LEAK_TOTALS.hits += len(problems)
    return problems


# --------------------------------------------------------------------------- the server subprocess


def flags_to_args(flags: dict[str, object]) -> list[str]:
    """``token_ttl="2s"`` -> ``--token-ttl 2s``; True -> bare flag; list -> repeated flag."""
    args: list[str] = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


class ServerHandle:
    """One real vault-proxy server process; restartable on the same port and data dir."""

    def __init__(
        self,
        *,
        base_dir: Path,
        data_dir: Path,
        audit_path: Path,
        extra: list[str],
        recorder: ResponseRecorder,
        registry: SecretRegistry,
    ) -> None:
        self.base_dir = base_dir
        self.data_dir = data_dir
        self.audit_path = audit_path
        self.log_path = base_dir / "server.log"
        self.home = base_dir / "home"
        self.home.mkdir(mode=0o700, exist_ok=True)
        self.extra = extra
        self.recorder = recorder
        self.registry = registry
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: httpx.Client = self.new_client()
        self.admin_token: str | None = None
        self.password: str | None = None
        self.last_stop_forced = False
        self.extra_scanned: list[Path] = []  # more files the leak check reads (e.g. CLI output a test saved)

    # -- process control ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vault_proxy.server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--audit-log",
            str(self.audit_path),
            *self.extra,
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_PROXY_", "VAULT_"))}
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> ServerHandle:
        assert not self.running, "server already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True
            )
        self._wait_ready()
        self.http.close()
        self.http = self.new_client()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with code {self.proc.returncode} before ready:\n{self.log_text()}")
            try:
                resp = httpx.get(f"{self.addr}/health", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if resp.status_code == 200:
                return
            time.sleep(0.05)
        self.kill9()
        pytest.fail(f"server not ready after {READY_TIMEOUT}s:\n{self.log_text()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait up to 10 s, else SIGKILL. Returns the exit code."""
        self.http.close()
        if self.proc is None:
            return None
        self.last_stop_forced = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.last_stop_forced = True
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
        self.http.close()

    def restart(self) -> ServerHandle:
        """Stop (if running) and start again on the same port with the same data dir."""
        if self.running:
            self.stop()
        self.admin_token = None
        return self.start()

    def log_text(self) -> str:
        return _read_text(self.log_path)

    # -- HTTP helpers ------------------------------------------------------------------------------

    def new_client(self, **kwargs: object) -> httpx.Client:
        """A fresh recorded client (one per thread in concurrent tests)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.addr, event_hooks={"response": [self.recorder.hook]}, **kwargs)

    def unlock(self, password: str | None = None) -> str:
        """Unlock (creating the vault on first use); returns the admin token and remembers both."""
        password = password or self.password
        assert password, "no password given"
        self.registry.add(password)
        resp = self.http.post("/auth/unlock", json={"password": password})
        assert resp.status_code == 200, f"unlock failed: {resp.status_code} {resp.text}"
        token = resp.json()["id"]
        self.password = password
        self.admin_token = token
        return token

    def admin_headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.admin_token
        assert token, "no admin token: unlock first"
        return {"Authorization": f"Bearer {token}"}

    def cli(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        run_env.update(VAULT_ADDR=self.addr, HOME=str(self.home))
        if env:
            run_env.update(env)
        return subprocess.run(
            [sys.executable, "-m", "vault_proxy.cli", *args],
            input=input,
            env=run_env,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)


# --------------------------------------------------------------------------- API shortcuts


def bearer_service(name: str, token: str, base_url: str = "https://api.example.com/v1") -> dict:
    return {"name": name, "base_url": base_url, "auth": {"type": "bearer", "token": token}}


def add_service(server: ServerHandle, body: dict, token: str | None = None) -> dict:
    resp = server.http.post("/services", json=body, headers=server.admin_headers(token))
    assert resp.status_code == 201, f"add service: {resp.status_code} {resp.text}"
    return resp.json()


def service_names(server: ServerHandle, token: str | None = None) -> list[str]:
    resp = server.http.get("/services", headers=server.admin_headers(token))
    assert resp.status_code == 200, f"list services: {resp.status_code} {resp.text}"
    return [info["name"] for info in resp.json()]


def upload_file(
    server: ServerHandle,
    name: str | None,
    data: bytes,
    mime: str = "application/octet-stream",
    *,
    filename: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    form = {} if name is None else {"name": name}
    files = {"file": (filename or name or "upload.bin", data, mime)}
    return server.http.post("/files", data=form, files=files, headers=server.admin_headers(token))


def create_token(server: ServerHandle, body: dict, token: str | None = None) -> dict:
    resp = server.http.post("/tokens", json=body, headers=server.admin_headers(token))
    assert resp.status_code == 201, f"create token: {resp.status_code} {resp.text}"
    return resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- key material


def ssh_private_key_pem(passphrase: str | None = None) -> bytes:
    """A fresh Ed25519 private key: OpenSSH format, or encrypted PKCS#8 PEM with a passphrase."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    if passphrase is None:
        return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    return key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(passphrase.encode())
    )


def ssh_host_public_key() -> str:
    """A fresh ``ssh-ed25519 AAAA...`` public key line to pin as a host key."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pub = ed25519.Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()


def ssh_fingerprint(public_key_line: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key line."""
    import hashlib

    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pem_secret_line(pem: bytes) -> str:
    """A line of key material from the middle of a PEM (unique per key, safe to search for)."""
    lines = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def service_account_json(registry: SecretRegistry) -> bytes:
    """A realistic Google service-account key file; its key id and key material are registered."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    key_id = registry.new("sa-keyid")
    registry.add(pem_secret_line(pem))
    info = {
        "type": "service_account",
        "project_id": "vault-proxy-tests",
        "private_key_id": key_id,
        "private_key": pem.decode(),
        "client_email": "robot@vault-proxy-tests.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return json.dumps(info).encode()
