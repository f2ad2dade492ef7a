"""Several ``--listen`` addresses, each with its own unlock lockout (SPEC §2, §6).

The scenario of the issue: agents (or a hostile local process) talk to the TCP listener, the
operator to a unix socket. Hammering the TCP listener with wrong passwords locks out that
listener only; the operator still unlocks through the socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import assert_error, free_port, make_temp_dir
from raw_server import SERVER, run_server, stop, wait_health, write_tls_files

WRONG = "unlock failed: wrong password or corrupted vault"
LOCKOUT = re.compile(r"too many attempts, retry in (\d+)s")


def unix_client(server, sock: Path) -> httpx.Client:
    """A recorded client (leak check) that talks to the server's unix socket."""
    return server.new_client(transport=httpx.HTTPTransport(uds=str(sock)))


def cli(server, addr: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return server.cli("--addr", addr, *args, input=stdin)


def audit_entries(server) -> list[dict]:
    return [json.loads(line) for line in server.audit_path.read_text().splitlines() if line.strip()]


def lock_out(client: httpx.Client, wrong: str) -> httpx.Response:
    """Five wrong passwords, then a sixth attempt: returns the (429) response to it."""
    for attempt in range(5):
        assert_error(client.post("/auth/unlock", json={"password": f"{wrong}-{attempt}"}), 401, WRONG)
    return client.post("/auth/unlock", json={"password": f"{wrong}-6"})


def assert_locked_out(resp: httpx.Response) -> int:
    msg = assert_error(resp, 429)
    match = LOCKOUT.fullmatch(msg)
    assert match, f"lockout message {msg!r}"
    assert resp.headers.get("retry-after") == match.group(1)
    assert 1 <= int(match.group(1)) <= 30
    return int(match.group(1))


# --------------------------------------------------------------------------- TCP + unix socket


def test_tcp_lockout_does_not_lock_out_the_unix_socket(start_server, secrets):
    sock = make_temp_dir() / "operator.sock"
    server = start_server("--listen", f"unix:{sock}")  # first --listen is the handle's TCP port
    password = secrets.new("listener-pw")
    server.unlock(password)  # creates the vault (over TCP)
    assert server.http.post("/auth/lock", headers=server.admin_headers()).status_code == 200

    log = server.log_text()
    assert f"listening on http://127.0.0.1:{server.port}, unix:{sock} (data dir {server.data_dir})" in log
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660

    wrong = secrets.new("attacker-guess")
    assert_locked_out(lock_out(server.http, wrong))
    # The right password is refused on the locked-out listener too.
    assert_locked_out(server.http.post("/auth/unlock", json={"password": password}))

    with unix_client(server, sock) as operator:
        assert operator.get("/health").json() == {"status": "locked"}
        # Failures on the socket count for the socket only: one wrong password is a plain 401 ...
        assert_error(operator.post("/auth/unlock", json={"password": f"{wrong}-op"}), 401, WRONG)
        # ... and the right one unlocks while the TCP listener is locked out.
        unlocked = operator.post("/auth/unlock", json={"password": password})
        assert unlocked.status_code == 200, unlocked.text
        token = unlocked.json()["id"]
        assert operator.get("/health").json() == {"status": "unlocked"}

    # The token works on every listener; the TCP listener's lockout is not lifted by the socket's success.
    assert server.http.get("/services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert_locked_out(server.http.post("/auth/unlock", json={"password": password}))
    assert "unlock locked out on 127.0.0.1:" in server.log_text()

    failed = [e for e in audit_entries(server) if e.get("action") == "unlock.failed"]
    assert [e["listener"] for e in failed] == [f"127.0.0.1:{server.port}"] * 5 + [f"unix:{sock}"]
    assert [e["failures"] for e in failed] == [1, 2, 3, 4, 5, 1]


def test_cli_reaches_each_listener(start_server, secrets):
    sock = make_temp_dir() / "op.sock"
    server = start_server("--listen", f"unix:{sock}")
    addr = f"unix:{sock}"
    assert cli(server, addr, "health").stdout == "vault: locked\n"
    password = secrets.new("cli-listener-pw")
    assert cli(server, addr, "unlock", "--password-stdin", stdin=password + "\n").returncode == 0
    assert cli(server, addr, "health").stdout == "vault: unlocked\n"
    assert cli(server, server.addr, "health").stdout == "vault: unlocked\n"


def test_socket_is_removed_on_shutdown_and_reused_after_a_crash(start_server):
    sock = make_temp_dir() / "op.sock"
    server = start_server("--listen", f"unix:{sock}")
    assert server.stop() == 0
    assert not sock.exists()
    server.start()
    assert sock.exists()
    server.kill9()  # leaves a stale socket file behind
    assert sock.exists()
    server.start()
    with unix_client(server, sock) as client:
        assert client.get("/health").json() == {"status": "locked"}


# --------------------------------------------------------------------------- a raw subprocess


def test_tls_tcp_listener_and_plain_unix_socket(tmp_path):
    """With --tls-cert, TCP listeners speak HTTPS; a unix socket stays plain HTTP (vault-cli's unix: form)."""
    cert, key, ca_pem = write_tls_files(tmp_path)
    base = make_temp_dir()
    sock, port = base / "op.sock", free_port()
    proc = run_server("--listen", f"127.0.0.1:{port}", "--listen", f"unix:{sock}", "--data-dir", str(base / "data"),
                      "--tls-cert", str(cert), "--tls-key", str(key), "--audit-log", "-")  # fmt: skip
    try:
        with (
            httpx.Client(verify=ssl.create_default_context(cafile=str(ca_pem)), base_url=f"https://127.0.0.1:{port}") as tcp,
            httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://vault") as unix,
        ):  # fmt: skip
            assert wait_health(tcp, "/health", proc).json() == {"status": "locked"}
            assert unix.post("/auth/unlock", json={"password": "tls-listener-pw"}).status_code == 200
            assert_locked_out(lock_out(tcp, "tls-wrong-pw"))  # the listener is told apart under TLS too
            assert unix.post("/auth/unlock", json={"password": "tls-listener-pw"}).status_code == 200
    finally:
        code, _, out = stop(proc)
    assert code == 0
    assert f"listening on https://127.0.0.1:{port}, unix:{sock} " in out
    failed = [json.loads(line) for line in out.splitlines() if '"unlock.failed"' in line]
    assert [e["listener"] for e in failed] == [f"127.0.0.1:{port}"] * 5  # not "unknown": TLS hides nothing


def test_env_var_takes_comma_separated_addresses():
    base = make_temp_dir()
    sock, port = base / "env.sock", free_port()
    env = {"VAULT_PROXY_LISTEN": f"127.0.0.1:{port}, unix:{sock}", "VAULT_PROXY_DATA_DIR": str(base / "data")}
    proc = run_server("--audit-log", "-", env=env)
    try:
        with httpx.Client() as tcp, httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as unix:
            assert wait_health(tcp, f"http://127.0.0.1:{port}/health", proc).json() == {"status": "locked"}
            assert unix.get("http://vault/health").json() == {"status": "locked"}
    finally:
        code, _, out = stop(proc)
    assert code == 0, out
    assert f"listening on http://127.0.0.1:{port}, unix:{sock} " in out
    assert not sock.exists()


# --------------------------------------------------------------------------- start-up errors


def start_fails(*args: str) -> str:
    data = make_temp_dir() / "data"
    result = subprocess.run([*SERVER, "--data-dir", str(data), "--audit-log", "-", *args],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (["nonsense"], "--listen 'nonsense' must be host:port or unix:/path.sock"),
        (["127.0.0.1:PORT", "127.0.0.1:99999"], "--listen '127.0.0.1:99999' must be host:port"),
        (["unix:"], "--listen 'unix:': the unix socket path is empty"),
        (["127.0.0.1:PORT", "127.0.0.1:PORT"], "--listen '127.0.0.1:PORT' is given twice"),
        (["[::1]:PORT", "[0::1]:PORT"], "--listen '[0::1]:PORT' is the same as '[::1]:PORT'"),
        (["127.0.0.1:PORT", "0.0.0.0:PORT2"], "refusing to listen on 0.0.0.0 without TLS"),
    ],
)
def test_bad_listen_values_are_clear_start_up_errors(listen, message):
    port, port2 = free_port(), free_port()
    args = [a for value in listen for a in ("--listen", value.replace("PORT2", str(port2)).replace("PORT", str(port)))]
    stderr = start_fails(*args)
    assert message.replace("PORT2", str(port2)).replace("PORT", str(port)) in stderr


def test_busy_address_fails_start_up_and_leaves_no_socket_behind():
    sock = make_temp_dir() / "first.sock"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stderr = start_fails("--listen", f"unix:{sock}", "--listen", f"127.0.0.1:{port}")
    assert f"cannot listen on http://127.0.0.1:{port}: Address already in use" in stderr
    assert not sock.exists()  # the listener bound before the failure is cleaned up


def test_socket_path_that_is_a_file_or_in_use(start_server):
    path = make_temp_dir() / "not-a-socket"
    path.write_text("keep me")
    assert f"{path} exists and is not a socket" in start_fails("--listen", f"unix:{path}")
    assert path.read_text() == "keep me"

    sock = make_temp_dir() / "taken.sock"
    start_server("--listen", f"unix:{sock}")
    assert f"{sock} is in use by another server" in start_fails("--listen", f"unix:{sock}")
