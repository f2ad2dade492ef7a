"""vault-cli end to end: the real server (``server`` fixture, conftest.py) driven through the CLI.

Every CLI run goes through ``cli`` below, which records stdout/stderr; at teardown no registered
secret (service credentials, passwords) and no admin token may appear in any of them, nor in the
server log. conftest.py's own leak check also scans the audit log and the data dir.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import SecretRegistry, ServerHandle, free_port, make_temp_dir, unique

HEX64 = re.compile(r"^[0-9a-f]{64}$")
START_HINT = "(is it running? start it with 'vault-server' or 'make run')"


class Cli:
    """Runs ``python -m vault_proxy.cli`` against one server, with its own HOME, and records output."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.outputs: list[tuple[str, bytes]] = []  # (command, stdout+stderr)
        self.admin_tokens: set[str] = set()

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        env.update(VAULT_ADDR=self.server.addr, HOME=str(self.server.home), PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def run_bytes(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        record_stdout: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "vault_proxy.cli", *args],
            input=input,
            env=self.env(env),
            cwd=cwd,
            capture_output=True,
            timeout=60,
            check=False,
        )
        shown = (result.stdout if record_stdout else b"") + b"\n" + result.stderr
        self.outputs.append((" ".join(args), shown))
        return result

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        raw = self.run_bytes(*args, input=None if input is None else input.encode(), env=env)
        return subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode())

    def ok(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, f"vault-cli {' '.join(args)} failed: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def fails(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 1, f"vault-cli {' '.join(args)}: expected exit 1, got {result.returncode}"
        assert result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
        return result

    @property
    def session_file(self) -> Path:
        return self.server.home / ".vault-proxy" / "session"

    def unlock(self, password: str) -> str:
        """``unlock --password-stdin``; returns the saved admin token."""
        result = self.ok("unlock", "--password-stdin", input=password + "\n")
        assert result.stdout == "Vault unlocked. Session saved.\n"
        assert f"saved to {self.session_file}" in result.stderr
        token = self.session_file.read_text().strip()
        self.admin_tokens.add(token)
        return token


@pytest.fixture
def cli(server: ServerHandle, secrets: SecretRegistry) -> Iterator[Cli]:
    runner = Cli(server)
    yield runner
    log = server.log_text()
    for token in runner.admin_tokens:
        secrets.add_log_only(token)  # conftest also looks for it in the logs and the data dir
    problems = []
    for value in sorted(secrets.secrets | runner.admin_tokens):
        problems += [
            f"{value!r} in output of 'vault-cli {cmd}'" for cmd, out in runner.outputs if value.encode() in out
        ]
        if value in log:
            problems.append(f"{value!r} in the server log {server.log_path}")
    assert not problems, "secret leak:\n" + "\n".join(problems)


@pytest.fixture
def unlocked(cli: Cli, secrets: SecretRegistry) -> Cli:
    cli.unlock(secrets.new("cli-master-pw"))
    return cli


def bearer_json(name: str, token: str, base_url: str = "https://api.example.com") -> str:
    return json.dumps({"name": name, "base_url": base_url, "auth": {"type": "bearer", "token": token}})


# --------------------------------------------------------------------------- health, unlock, lock


def test_health_and_unlock_writes_private_session_file(cli: Cli, secrets: SecretRegistry) -> None:
    assert cli.ok("health").stdout == "vault: locked\n"
    assert cli.ok("health", "--json").stdout == "vault: locked\n"  # SPEC §14: --json changes no text

    token = cli.unlock(secrets.new("cli-master-pw"))
    assert HEX64.match(token)
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.session_file.parent.stat().st_mode) == 0o700
    assert cli.ok("health").stdout == "vault: unlocked\n"
    # the saved token is what later commands use
    assert cli.ok("token", "list", "--json").stdout.count('"scope": "admin"') == 1


def test_unlock_prints_expiry(cli: Cli, secrets: SecretRegistry) -> None:
    result = cli.ok("unlock", "--password-stdin", input=secrets.new("cli-master-pw") + "\n")
    cli.admin_tokens.add(cli.session_file.read_text().strip())
    assert result.stdout == "Vault unlocked. Session saved.\n"
    expiry = r"Admin token saved to \S+, expires at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 23h5\dm\)"
    assert re.fullmatch(expiry, result.stderr.splitlines()[0]), result.stderr


def test_wrong_password_and_short_password(cli: Cli, secrets: SecretRegistry) -> None:
    short = cli.fails("unlock", "--password-stdin", input="short\n")
    assert short.stderr == "error: password must be at least 8 characters\n"
    assert not cli.session_file.exists()

    password = secrets.new("cli-master-pw")
    cli.unlock(password)
    assert cli.ok("lock").stdout == "Vault locked.\n"
    assert not cli.session_file.exists()

    wrong = secrets.new("cli-wrong-pw")
    result = cli.fails("unlock", "--password-stdin", input=wrong + "\n")
    assert result.stderr == "error: unlock failed: wrong password or corrupted vault\n"
    assert result.stdout == ""
    assert not cli.session_file.exists()
    assert cli.ok("health").stdout == "vault: locked\n"
    cli.unlock(password)


def test_lock_then_commands_fail(unlocked: Cli) -> None:
    old_token = unlocked.session_file.read_text().strip()
    assert unlocked.ok("lock").stdout == "Vault locked.\n"
    assert not unlocked.session_file.exists()

    # The server answers 401 once locked (lock revokes every token); the CLI asks /health and says why.
    no_token = unlocked.fails("service", "list")
    assert no_token.stderr == "error: vault is locked (run 'vault-cli unlock')\n"
    with_token = unlocked.fails("service", "list", env={"VAULT_TOKEN": old_token})
    assert with_token.stderr == "error: vault is locked (run 'vault-cli unlock')\n"
    again = unlocked.ok("lock", env={"VAULT_TOKEN": old_token})
    assert again.stdout == "Vault locked.\n" and "already locked" in again.stderr


def test_passwd_from_stdin(cli: Cli, secrets: SecretRegistry) -> None:
    old, new = secrets.new("cli-old-pw"), secrets.new("cli-new-pw")
    cli.unlock(old)
    wrong = cli.fails("passwd", "--password-stdin", input=f"{secrets.new('cli-bad-pw')}\n{new}\n")
    assert wrong.stderr.startswith("error: ")
    assert cli.ok("passwd", "--password-stdin", input=f"{old}\n{new}\n").stdout == "Password changed.\n"
    cli.ok("lock")
    cli.fails("unlock", "--password-stdin", input=old + "\n")
    cli.unlock(new)


# --------------------------------------------------------------------------- services


def test_service_commands(unlocked: Cli, secrets: SecretRegistry) -> None:
    a, b = unique("cli-a"), unique("cli-b")
    secret_a, secret_b = secrets.new("cli-secret-ZQ81x"), secrets.new("cli-secret-header")

    assert unlocked.ok("service", "list").stdout == "No services configured.\n"
    assert unlocked.ok("service", "add", bearer_json(a, secret_a)).stdout == "Service added.\n"
    body_b = {"name": b, "base_url": "https://b.example.com",
              "auth": {"type": "header", "header_name": "X-Api-Key", "header_value": secret_b}}  # fmt: skip
    assert unlocked.ok("service", "add", "-", input=json.dumps(body_b)).stdout == "Service added.\n"
    assert unlocked.ok("service", "add", input=json.dumps(body_b)).stdout == "Service added.\n"  # an update

    assert unlocked.ok("service", "list").stdout == (
        f"  {a:<20} https://api.example.com (bearer)\n  {b:<20} https://b.example.com (header)\n"
    )
    listed = json.loads(unlocked.ok("service", "list", "--json").stdout)
    assert [(s["name"], s["auth_type"]) for s in listed] == [(a, "bearer"), (b, "header")]

    shown = json.loads(unlocked.ok("service", "show", b).stdout)
    assert shown["name"] == b and shown["header_name"] == "X-Api-Key" and shown["auth_type"] == "header"

    invalid = unlocked.fails("service", "add", json.dumps({"name": "bad", "auth": {"type": "bearer"}}))
    assert "token" in invalid.stderr

    assert unlocked.ok("service", "remove", a).stdout == "Service removed.\n"
    missing = unlocked.fails("service", "show", a)
    assert missing.stderr == f'error: service "{a}" not found\n'
    assert [s["name"] for s in json.loads(unlocked.ok("service", "list", "--json").stdout)] == [b]


def test_service_add_from_file(unlocked: Cli, secrets: SecretRegistry, tmp_path: Path) -> None:
    name = unique("cli-file")
    path = tmp_path / "svc.json"
    path.write_text(bearer_json(name, secrets.new("cli-file-secret")))
    assert unlocked.ok("service", "add", f"@{path}").stdout == "Service added.\n"
    assert json.loads(unlocked.ok("service", "show", name).stdout)["auth_type"] == "bearer"

    bare = unlocked.fails("service", "add", str(path))  # a path without @ is not JSON: say how to read it
    assert bare.stderr.startswith("error: invalid service JSON: Expecting value")
    assert f"write @{path}" in bare.stderr
    missing = unlocked.fails("service", "add", f"@{tmp_path / 'nope.json'}")
    assert missing.stderr == f"error: cannot read {tmp_path / 'nope.json'}: No such file or directory\n"


# --------------------------------------------------------------------------- files


def test_file_round_trip(unlocked: Cli, tmp_path: Path) -> None:
    name = unique("cli-file") + ".bin"
    data = bytes(range(256)) * 300 + b"\x00\r\n\x1a end"
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    assert unlocked.ok("file", "list").stdout == "No files stored.\n"
    uploaded = unlocked.ok("file", "upload", name, str(src))
    assert uploaded.stdout == f'File "{name}" uploaded.\n'
    assert unlocked.ok("file", "list").stdout == f"  {name:<30} application/octet-stream ({len(data)} bytes)\n"
    assert json.loads(unlocked.ok("file", "list", "--json").stdout) == [
        {"name": name, "mime_type": "application/octet-stream", "size": len(data)}
    ]

    out = tmp_path / "out.bin"
    assert (
        unlocked.ok("file", "download", name, str(out)).stdout == f'File "{name}" saved to {out} ({len(data)} bytes)\n'
    )
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    to_stdout = unlocked.run_bytes("file", "download", name, "-", record_stdout=False)
    assert to_stdout.returncode == 0 and to_stdout.stdout == data

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    default = unlocked.run_bytes("file", "download", name, cwd=workdir)
    assert default.returncode == 0 and default.stdout == f'File "{name}" saved to {name} ({len(data)} bytes)\n'.encode()
    assert (workdir / name).read_bytes() == data

    assert unlocked.ok("file", "delete", name).stdout == "File deleted.\n"
    assert unlocked.fails("file", "download", name, str(out)).stderr == f'error: file "{name}" not found\n'
    assert unlocked.ok("file", "list").stdout == "No files stored.\n"


# --------------------------------------------------------------------------- tokens


def test_restricted_token_and_revoke(unlocked: Cli, secrets: SecretRegistry) -> None:
    a, b = unique("cli-a"), unique("cli-b")
    unlocked.ok("service", "add", bearer_json(a, secrets.new("cli-secret-a")))
    unlocked.ok("service", "add", bearer_json(b, secrets.new("cli-secret-b")))

    created = unlocked.ok("token", "create", "proxy", "--services", a, "--ttl", "2h", "--name", "agent-7")
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and HEX64.match(token)
    assert "proxy" in created.stderr and a in created.stderr and "(in 1h59m)" in created.stderr

    as_agent = {"VAULT_TOKEN": token}
    assert [s["name"] for s in json.loads(unlocked.ok("service", "list", "--json", env=as_agent).stdout)] == [a]
    assert unlocked.fails("service", "show", b, env=as_agent).stderr == f'error: service "{b}" not found\n'
    assert unlocked.fails("token", "list", env=as_agent).stderr == "error: admin scope required\n"

    listed = json.loads(unlocked.ok("token", "list", "--json").stdout)
    mine = [t for t in listed if t.get("name") == "agent-7"]
    assert len(mine) == 1 and mine[0]["scope"] == "proxy" and mine[0]["services"] == [a]
    assert token.startswith(mine[0]["id_prefix"])
    table = unlocked.ok("token", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "PREFIX", "SCOPE"]
    assert mine[0]["id_prefix"] in table and "agent-7" in table
    assert token not in table

    assert unlocked.fails("token", "revoke", token[:4]).stderr == (
        "error: token prefix must be at least 8 characters\n"
    )
    assert unlocked.ok("token", "revoke", mine[0]["id_prefix"]).stdout == "Token revoked.\n"
    revoked = unlocked.fails("service", "list", env=as_agent)
    assert revoked.stderr == "error: invalid token (run 'vault-cli unlock' or set VAULT_TOKEN)\n"
    unlocked.session_file.unlink()  # the vault stays unlocked, the CLI has no token
    no_session = unlocked.fails("token", "list")
    assert no_session.stderr == "error: authorization required (run 'vault-cli unlock' or set VAULT_TOKEN)\n"


def test_token_create_admin_for_scripts(unlocked: Cli) -> None:
    token = unlocked.ok("token", "create", "admin").stdout.strip()
    assert HEX64.match(token)
    unlocked.admin_tokens.add(token)  # must not show up anywhere after this
    unlocked.outputs.pop()  # ... except in the output of the command that created it
    assert unlocked.ok("file", "list", env={"VAULT_TOKEN": token}).stdout == "No files stored.\n"


# --------------------------------------------------------------------------- proxy


class _Upstream(BaseHTTPRequestHandler):
    """A plain-HTTP upstream on 127.0.0.1 that reports whether the injected credential was right."""

    expected_auth = ""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/missing"):
            self._send(404, b"no such thing\n", "text/plain")
            return
        ok = self.headers.get("Authorization") == self.expected_auth
        self._send(200, json.dumps({"path": self.path, "auth_ok": ok}).encode(), "application/json")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = {"received": body.decode(), "content_type": self.headers.get("Content-Type")}
        self._send(201, json.dumps(reply).encode(), "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream(secrets: SecretRegistry) -> Iterator[tuple[str, str]]:
    secret = secrets.new("cli-secret-upstream")
    handler = type("Handler", (_Upstream,), {"expected_auth": f"Bearer {secret}"})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", secret
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def proxy_server(start_server: object) -> ServerHandle:
    return start_server(allow_private="127.0.0.1/32")  # type: ignore[operator]


def test_proxy_command(proxy_server: ServerHandle, secrets: SecretRegistry, upstream: tuple[str, str]) -> None:
    cli = Cli(proxy_server)
    cli.unlock(secrets.new("cli-master-pw"))
    base_url, secret = upstream
    svc = unique("cli-up")
    body = {"name": svc, "base_url": base_url, "tls_skip_verify": True, "auth": {"type": "bearer", "token": secret}}
    cli.ok("service", "add", "-", input=json.dumps(body))

    got = cli.ok("proxy", svc, "GET", "/hello?x=1")
    assert json.loads(got.stdout) == {"path": "/hello?x=1", "auth_ok": True}

    posted = cli.run_bytes("proxy", svc, "POST", "/items", "-", input=b'{"k": "v"}')
    assert posted.returncode == 0
    assert json.loads(posted.stdout) == {"received": '{"k": "v"}', "content_type": "application/json"}

    missing = cli("proxy", svc, "GET", "/missing")
    assert missing.returncode == 1
    assert missing.stdout == "no such thing\n"  # the upstream's body, whatever the status

    unknown = cli.fails("proxy", "no-such-service", "GET", "/")
    assert unknown.stderr == 'error: service "no-such-service" not found\n'

    for cmd, out in cli.outputs:
        assert secret.encode() not in out, f"secret in output of 'vault-cli {cmd}'"
    assert secret not in proxy_server.log_text()


# --------------------------------------------------------------------------- unix socket


def test_unix_socket_address(secrets: SecretRegistry) -> None:
    base = make_temp_dir()
    sock, data, home = base / "vault.sock", base / "data", base / "home"
    data.mkdir(mode=0o700)
    home.mkdir(mode=0o700)
    log = (base / "server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault_proxy.server", "--listen", f"unix:{sock}", "--data-dir", str(data),
         "--audit-log", str(data / "audit.jsonl")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), f"server did not create {sock}: {(base / 'server.log').read_text()}"
        run_env = {**env, "VAULT_ADDR": f"unix:{sock}", "HOME": str(home)}

        def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "vault_proxy.cli", *args], input=stdin, env=run_env,
                                  capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

        assert run("health").stdout == "vault: locked\n"
        password = secrets.new("cli-master-pw")
        assert run("unlock", "--password-stdin", stdin=password + "\n").returncode == 0
        assert run("service", "list").stdout == "No services configured.\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    assert password not in (base / "server.log").read_text()
    refused = subprocess.run([sys.executable, "-m", "vault_proxy.cli", "health"], env=run_env,
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == f"vault-server unreachable: unix:{sock}: No such file or directory {START_HINT}\n"
