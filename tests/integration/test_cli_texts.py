"""SPEC §14 "Output texts that scripts written for the Go tool parse": one case per row of the table.

Each case starts its own server, prepares what the command needs through the HTTP API, runs
``vault-cli`` and compares stdout with the Go tool's text exactly (``--json`` changes none of them).
Detail for humans may go to stderr; these tests only pin stdout, the exit code and, for ``health``
when the server is unreachable, the stderr line.
"""

from __future__ import annotations

import contextlib
import re
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import SecretRegistry, ServerHandle, free_port

HEX64 = re.compile(r"[0-9a-f]{64}\n")
SESSION_ADDR = re.compile(r"127\.0\.0\.1:\d+")


@dataclass
class World:
    """One server, unlocked or not, and what the case prepared on it."""

    server: ServerHandle
    secrets: SecretRegistry
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def unlock(self) -> None:
        """Unlock over HTTP; the CLI then uses that admin token through VAULT_TOKEN."""
        token = self.server.unlock(self.secrets.new("texts-master-pw"))
        self.env["VAULT_TOKEN"] = token

    def api(self, method: str, path: str, **kwargs: object) -> dict:
        resp = self.server.http.request(method, path, headers=self.server.admin_headers(), **kwargs)  # type: ignore[arg-type]
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def add_service(self, name: str, base_url: str = "https://api.example.com", auth_type: str = "bearer") -> None:
        auth = {"type": "bearer", "token": self.secrets.new("texts-token")}
        if auth_type == "header":
            auth = {"type": "header", "header_name": "X-Api-Key", "header_value": self.secrets.new("texts-key")}
        self.api("POST", "/services", json={"name": name, "base_url": base_url, "auth": auth})

    def upload(self, name: str, data: bytes, mime: str) -> None:
        self.api("POST", "/files", files={"file": (name, data, mime)}, data={"name": name})

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.server.cli(*args, input=input, env=self.env)

    @property
    def session_file(self) -> Path:
        return self.server.home / ".vault-proxy" / "session"


def locked(world: World) -> None:
    pass


def unlocked(world: World) -> None:
    world.unlock()


def two_services(world: World) -> None:
    world.unlock()
    world.add_service("openai", "https://api.openai.com")
    world.add_service("a-service-name-longer-than-20", "https://b.example.com/v1", "header")


def one_service(world: World) -> None:
    world.unlock()
    world.add_service("openai")


def one_file(world: World) -> None:
    world.unlock()
    world.upload("key.pem", b"0123456789", "text/plain")


def two_files(world: World) -> None:
    one_file(world)
    world.upload("a-stored-file-with-a-name-over-30.json", b"{}", "application/json")


def service_json(world: World) -> str:
    return (
        '{"name": "openai", "base_url": "https://api.openai.com", '
        f'"auth": {{"type": "bearer", "token": "{world.secrets.new("texts-token")}"}}}}'
    )


class FakeRedis:
    """A loopback "redis" that answers +OK to the vault's AUTH: enough to open a session."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        if conn.recv(4096):
                            conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.sock.close()


def redis_service(world: World) -> None:
    """The session commands (imap, smtp, redis, postgres) are one factory in cli/sessions.py: redis stands in."""
    world.unlock()
    peer = FakeRedis()
    world.cleanups.append(peer.close)
    password = world.secrets.new("texts-redis-pw")
    auth = {"type": "redis", "redis_host": "127.0.0.1", "redis_port": peer.port, "redis_password": password}
    world.api("POST", "/services", json={"name": "cache", "auth": auth})


@dataclass
class Row:
    """A command of the table: how to prepare, the arguments, and the exact stdout (or a pattern)."""

    prepare: Callable[[World], None]
    args: tuple[str, ...]
    stdout: str | re.Pattern[str] | Callable[[World], str]
    exit_code: int = 0
    stdin: Callable[[World], str] | None = None
    check: Callable[[World, subprocess.CompletedProcess[str]], None] | None = None


def session_deleted(world: World, result: subprocess.CompletedProcess[str]) -> None:
    assert not world.session_file.exists()


def session_written(world: World, result: subprocess.CompletedProcess[str]) -> None:
    assert stat.S_IMODE(world.session_file.stat().st_mode) == 0o600


def unreachable_on_stderr(world: World, result: subprocess.CompletedProcess[str]) -> None:
    assert result.stderr.startswith("vault-server unreachable: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def downloaded_private(world: World, result: subprocess.CompletedProcess[str]) -> None:
    out = world.tmp / "out.pem"
    assert out.read_bytes() == b"0123456789"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def unlock_via_cli(world: World) -> None:
    password = world.secrets.new("texts-master-pw")
    done = world.cli("unlock", "--password-stdin", input=password + "\n")
    assert done.returncode == 0, done.stderr
    world.secrets.add_log_only(world.session_file.read_text().strip())


def created_token(world: World) -> None:
    world.unlock()
    token = world.api("POST", "/tokens", json={"scope": "proxy", "ttl": "1h"})
    world.env["TEXTS_TOKEN"] = token["id"]


def _pad(name: str, width: int) -> str:
    return name + " " * max(0, width - len(name))


ROWS: dict[str, Row] = {
    "health-locked": Row(locked, ("health",), "vault: locked\n"),
    "health-locked-json": Row(locked, ("health", "--json"), "vault: locked\n"),
    "health-unlocked": Row(unlocked, ("health",), "vault: unlocked\n"),
    "health-unlocked-json": Row(unlocked, ("health", "--json"), "vault: unlocked\n"),
    "health-unreachable": Row(locked, ("--addr", "http://127.0.0.1:{closed}", "health"), "", 1,
                              check=unreachable_on_stderr),
    "unlock": Row(locked, ("unlock", "--password-stdin"), "Vault unlocked. Session saved.\n",
                  stdin=lambda w: w.secrets.new("texts-master-pw") + "\n", check=session_written),
    "lock": Row(unlock_via_cli, ("lock",), "Vault locked.\n", check=session_deleted),
    "service-list-empty": Row(unlocked, ("service", "list"), "No services configured.\n"),
    "service-list": Row(two_services, ("service", "list"),
                        "  a-service-name-longer-than-20 https://b.example.com/v1 (header)\n"
                        "  " + _pad("openai", 20) + " https://api.openai.com (bearer)\n"),
    "service-add": Row(unlocked, ("service", "add", "-"), "Service added.\n", stdin=service_json),
    "service-add-update": Row(one_service, ("service", "add", "-"), "Service added.\n", stdin=service_json),
    "service-remove": Row(one_service, ("service", "remove", "openai"), "Service removed.\n"),
    "file-upload": Row(unlocked, ("file", "upload", "key.pem", "{src}"), 'File "key.pem" uploaded.\n'),
    "file-list-empty": Row(unlocked, ("file", "list"), "No files stored.\n"),
    "file-list": Row(two_files, ("file", "list"),
                     "  " + _pad("a-stored-file-with-a-name-over-30.json", 30) + " application/json (2 bytes)\n"
                     "  " + _pad("key.pem", 30) + " text/plain (10 bytes)\n"),
    "file-download": Row(one_file, ("file", "download", "key.pem", "{tmp}/out.pem"),
                         lambda w: f'File "key.pem" saved to {w.tmp}/out.pem (10 bytes)\n', check=downloaded_private),
    "file-download-stdout": Row(one_file, ("file", "download", "key.pem", "-"), "0123456789"),
    "file-delete": Row(one_file, ("file", "delete", "key.pem"), "File deleted.\n"),
    "token-create": Row(unlocked, ("token", "create", "proxy", "--ttl", "1h"), HEX64),
    "token-revoke": Row(created_token, ("token", "revoke", "{token}"), "Token revoked.\n"),
    "session": Row(redis_service, ("redis", "cache", "--timeout", "5"), SESSION_ADDR),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_go_tool_text(
    row: Row,
    start_server: Callable[..., ServerHandle],
    secrets: SecretRegistry,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    # loopback upstreams allowed: the session row points its service at 127.0.0.1
    world = World(start_server(allow_private="127.0.0.1/32"), secrets, tmp_path)
    request.addfinalizer(lambda: [cleanup() for cleanup in world.cleanups])
    row.prepare(world)
    (tmp_path / "src.pem").write_bytes(b"0123456789")
    values = {"closed": str(free_port()), "src": str(tmp_path / "src.pem"), "tmp": str(tmp_path),
              "token": world.env.pop("TEXTS_TOKEN", "")}  # fmt: skip
    args = [arg.format(**values) for arg in row.args]
    result = world.cli(*args, input=row.stdin(world) if row.stdin else None)

    assert result.returncode == row.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    if row.stdout is SESSION_ADDR:  # alone on the first line; the client secret may follow
        assert SESSION_ADDR.fullmatch(result.stdout.split("\n", 1)[0]), result.stdout
    elif isinstance(row.stdout, re.Pattern):
        assert row.stdout.fullmatch(result.stdout), result.stdout
    else:
        expected = row.stdout(world) if callable(row.stdout) else row.stdout
        assert result.stdout == expected
    if row.check:
        row.check(world, result)
