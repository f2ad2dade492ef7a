"""SSH exec against a real OpenSSH sshd (tests/peers/sshd.py) with keys stored in the vault."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import unique, upload_file
from sshd import Sshd

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Sshd:
    peer = Sshd(Path(tmp_path_factory.mktemp("sshd"))).start()
    yield peer
    peer.stop()


def _key_secret(env, key_text: str) -> None:
    """Register the key's base64 body lines: none may show up in any response or log."""
    for line in key_text.splitlines():
        if len(line) >= 40 and not line.startswith("-----"):
            env.secrets.add(line)


def _ssh_service(env, sshd: Sshd, key_text: str | None = None, **auth_extra) -> str:
    key_text = key_text or sshd.client_key_text
    _key_secret(env, key_text)
    key_file = unique("key")
    resp = upload_file(env.server, key_file, key_text.encode())
    assert resp.status_code in (200, 201), resp.text
    auth = {"type": "ssh_key", "ssh_host": sshd.host, "ssh_port": sshd.port, "ssh_user": sshd.user,
            "ssh_key_file_ref": key_file, **auth_extra}  # fmt: skip
    name = unique("ssh")
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _exec(env, name: str, command: str, **extra):
    return env.server.http.post(f"/ssh/{name}/exec", json={"command": command, **extra},
                                headers={"Authorization": f"Bearer {env.token()}"}, timeout=60)  # fmt: skip


def _info(env, name: str) -> dict:
    return env.server.http.get(f"/services/{name}", headers=env.server.admin_headers()).json()


def test_exec_output_exit_code_and_tofu_pin(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    assert "ssh_host_key_fingerprint" not in _info(proxy_env, name)
    resp = _exec(proxy_env, name, "echo out; echo err >&2; exit 3")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["stdout"], body["stderr"], body["exit_code"], body["timed_out"]) == ("out\n", "err\n", 3, False)
    assert body["stdout_truncated"] is False and isinstance(body["duration_ms"], int)
    info = _info(proxy_env, name)
    assert info["ssh_host_key_fingerprint"] == sshd.host_fingerprint
    assert info["ssh_connected"] is True
    line = [e for e in proxy_env.audit() if e.get("action") == "ssh.exec" and e.get("service") == name][-1]
    assert line["command"] == "echo out; echo err >&2; exit 3" and line["exit_code"] == 3


def test_burst_of_execs_reuses_one_connection(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    before = sshd.log_text().count("Accepted publickey")
    for i in range(5):
        assert _exec(proxy_env, name, f"echo {i}").json()["stdout"] == f"{i}\n"
    assert sshd.log_text().count("Accepted publickey") - before == 1


def test_large_output_is_truncated_at_10_mib(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    body = _exec(proxy_env, name, "head -c 11000000 /dev/zero | tr '\\0' a; echo done >&2").json()
    assert body["stdout_truncated"] is True and len(body["stdout"]) == 10 * MIB
    assert body["stderr"] == "done\n" and body["exit_code"] == 0


def test_timeout_kills_the_remote_command(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    marker = f"sleep {4000 + int(time.time()) % 900}"
    body = _exec(proxy_env, name, marker, timeout=1).json()
    assert body["timed_out"] is True and body["exit_code"] == 124
    deadline = time.monotonic() + 5
    while sshd.processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sshd.processes(marker) == [], "the remote sleep survived the timeout"
    assert _exec(proxy_env, name, "echo still-usable").json()["stdout"] == "still-usable\n"


@pytest.mark.parametrize("timeout", [0, 301, "30", True])
def test_bad_timeout_is_400(proxy_env, sshd, timeout):
    name = _ssh_service(proxy_env, sshd)
    resp = _exec(proxy_env, name, "true", timeout=timeout)
    assert resp.status_code == 400 and "timeout" in resp.json()["error"]


def test_allowlist(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd, ssh_allowed_commands=["echo", "uname -s"])
    assert _exec(proxy_env, name, "echo hi").json()["stdout"] == "hi\n"
    assert _exec(proxy_env, name, "uname -s").status_code == 200
    for command in ("echo hi && id", "echo hi; id", "echo $(id)", "id", "uname -a", "echo `id`", "echo hi > /tmp/x"):
        resp = _exec(proxy_env, name, command)
        assert resp.status_code == 403, command
        assert resp.json()["error"] == "command not in allowed list for this service"


def test_changed_host_key_refused_and_pin_kept_on_repost(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    assert _exec(proxy_env, name, "true").status_code == 200
    pinned = _info(proxy_env, name)["ssh_host_key_fingerprint"]
    old_key = sshd.host_key_line
    sshd.new_host_key()
    try:
        auth = {"type": "ssh_key", "ssh_host": sshd.host, "ssh_port": sshd.port, "ssh_user": sshd.user,
                "ssh_key_file_ref": _info(proxy_env, name)["ssh_key_file_ref"]}  # fmt: skip
        resp = proxy_env.server.http.put(f"/services/{name}", json={"name": name, "auth": auth},
                                         headers=proxy_env.server.admin_headers())  # fmt: skip
        assert resp.status_code == 200
        assert resp.json()["ssh_host_key_fingerprint"] == pinned, "a re-post must not drop the pin"
        resp = _exec(proxy_env, name, "true")
        assert resp.status_code == 502 and resp.json()["error"] == "host key mismatch"
        events = [e for e in proxy_env.audit() if e.get("action") == "ssh.host_key_mismatch"]
        assert events and events[-1]["service"] == name
        # Explicitly clearing the pin re-pins on the next connection (TOFU again).
        resp = proxy_env.server.http.put(f"/services/{name}", json={"name": name, "auth": {**auth, "ssh_host_key": ""}},
                                         headers=proxy_env.server.admin_headers())  # fmt: skip
        assert "ssh_host_key_fingerprint" not in resp.json()
        assert _exec(proxy_env, name, "true").status_code == 200
        assert _info(proxy_env, name)["ssh_host_key_fingerprint"] == sshd.host_fingerprint != pinned
    finally:
        assert old_key != sshd.host_key_line


def test_explicit_pin_enforced(proxy_env, sshd):
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFBEc2vj7Z7r9qXjBvGmC1o6V0pGm4S6yM7Vf3qg3oZK"
    name = _ssh_service(proxy_env, sshd, ssh_host_key=other)
    resp = _exec(proxy_env, name, "true")
    assert resp.status_code == 502 and resp.json()["error"] == "host key mismatch"
    good = _ssh_service(proxy_env, sshd, ssh_host_key=sshd.host_key_line)
    assert _exec(proxy_env, good, "echo ok").json()["stdout"] == "ok\n"


def test_pem_rsa_key_with_passphrase(proxy_env, sshd):
    passphrase = proxy_env.secrets.new("passphrase")
    key = sshd.add_client_key(kind="rsa", passphrase=passphrase, fmt="pem")
    name = _ssh_service(proxy_env, sshd, key, ssh_key_passphrase=passphrase)
    assert _exec(proxy_env, name, "echo rsa").json()["stdout"] == "rsa\n"
    wrong = _ssh_service(proxy_env, sshd, key, ssh_key_passphrase=proxy_env.secrets.new("wrong"))
    resp = _exec(proxy_env, wrong, "true")
    assert resp.status_code == 400 and "cannot be loaded" in resp.json()["error"]


def test_loopback_refused_without_allow_private(strict_proxy_env, sshd):
    name = _ssh_service(strict_proxy_env, sshd)
    resp = _exec(strict_proxy_env, name, "true")
    assert resp.status_code == 403 and resp.json()["error"] == "ssh host address not allowed"


def test_cli_ssh_streams_and_exit_code(proxy_env, sshd):
    name = _ssh_service(proxy_env, sshd)
    env = {"VAULT_TOKEN": proxy_env.token()}
    done = proxy_env.server.cli("ssh", name, "echo out; echo err >&2; exit 7", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    words = proxy_env.server.cli("ssh", name, "echo", "a", "b", env=env)
    assert (words.returncode, words.stdout) == (0, "a b\n")


# --------------------------------------------------------------------------- SFTP upload / download


def _upload(env, name: str, remote_path: str, data: bytes, mode: str | None = "0600"):
    form = {"remote_path": remote_path} | ({"mode": mode} if mode else {})
    return env.server.http.post(f"/ssh/{name}/upload", data=form, files={"file": ("f", data)},
                                headers={"Authorization": f"Bearer {env.token()}"}, timeout=120)  # fmt: skip


def _download(env, name: str, remote_path: str):
    return env.server.http.post(f"/ssh/{name}/download", json={"remote_path": remote_path},
                                headers={"Authorization": f"Bearer {env.token()}"}, timeout=120)  # fmt: skip


def test_upload_download_round_trip_20_mb_with_mode(proxy_env, sshd, tmp_path):
    import hashlib
    import os

    name = _ssh_service(proxy_env, sshd)
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    data = os.urandom(20 * MIB)
    resp = _upload(proxy_env, name, f"{remote_dir}/blob.bin", data, "0640")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"ok": True, "bytes": len(data), "remote_path": f"{remote_dir}/blob.bin", "size": len(data),
                           "mode": "0640"}  # fmt: skip
    assert (remote_dir / "blob.bin").stat().st_mode & 0o7777 == 0o640
    assert hashlib.sha256((remote_dir / "blob.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    back = _download(proxy_env, name, f"{remote_dir}/blob.bin")
    assert back.status_code == 200 and back.content == data
    assert back.headers["Content-Type"] == "application/octet-stream"
    assert back.headers["X-Content-Type-Options"] == "nosniff"
    line = [e for e in proxy_env.audit() if e.get("action") == "ssh.upload" and e.get("service") == name][-1]
    assert line["bytes"] == len(data) and line["remote_path"].endswith("blob.bin")


def test_refused_paths(proxy_env, sshd, tmp_path):
    name = _ssh_service(proxy_env, sshd)
    link = tmp_path / "etc-link"
    link.symlink_to("/etc")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".ssh").mkdir()
    cases = {
        "relative/path": "absolute",
        "/etc/passwd": "/etc",
        "/usr/local/bin/x": "/usr",
        "/lib64/x": "/lib64",
        "/tmp/../etc/shadow": "/etc",
        f"{link}/hosts": "/etc",
        f"{tmp_path}/home/.ssh/authorized_keys": ".ssh",
        "/root/x": "/root",
    }
    for path, reason in cases.items():
        up = _upload(proxy_env, name, path, b"x")
        assert up.status_code == 400 and reason in up.json()["error"], (path, up.text)
        down = _download(proxy_env, name, path)
        assert down.status_code == 400 and reason in down.json()["error"], (path, down.text)


def test_allowed_paths_restrict_transfers(proxy_env, sshd, tmp_path):
    allowed = tmp_path / "drop"
    allowed.mkdir()
    name = _ssh_service(proxy_env, sshd, ssh_allowed_paths=[str(allowed)])
    assert _upload(proxy_env, name, f"{allowed}/ok.txt", b"fine").status_code == 200
    resp = _upload(proxy_env, name, f"{tmp_path}/elsewhere.txt", b"no")
    assert resp.status_code == 400 and "ssh_allowed_paths" in resp.json()["error"]
    assert _download(proxy_env, name, f"{allowed}/ok.txt").content == b"fine"


def test_cli_upload_and_download(proxy_env, sshd, tmp_path):
    name = _ssh_service(proxy_env, sshd)
    env = {"VAULT_TOKEN": proxy_env.token()}
    local = tmp_path / "local.txt"
    local.write_text("hello over sftp\n")
    remote = tmp_path / "remote.txt"
    done = proxy_env.server.cli("ssh-upload", name, str(local), str(remote), "--mode", "0600", env=env)
    assert done.returncode == 0, done.stderr
    assert remote.read_text() == "hello over sftp\n" and remote.stat().st_mode & 0o777 == 0o600
    out = proxy_env.server.cli("ssh-download", name, str(remote), "-", env=env)
    assert (out.returncode, out.stdout) == (0, "hello over sftp\n")


# --------------------------------------------------------------------------- WebSocket shell


def test_websocket_shell_runs_a_command_and_resizes(proxy_env, sshd):
    import asyncio

    import aiohttp

    name = _ssh_service(proxy_env, sshd)
    url = f"{proxy_env.server.addr}/ssh/{name}/session?cols=100&rows=30"
    headers = {"Authorization": f"Bearer {proxy_env.token()}"}

    async def read_until(ws, needle: bytes, seconds: float = 10) -> bytes:
        seen = b""
        deadline = asyncio.get_running_loop().time() + seconds
        while needle not in seen:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"{needle!r} not seen in {seen[-300:]!r}"
            message = await ws.receive(timeout=left)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            seen += message.data
        return seen

    async def session() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
            await ws.send_bytes(b"stty size; echo TERM=$TERM; echo mark-$((6*7))\n")
            out = await read_until(ws, b"mark-42")
            assert b"30 100" in out and b"TERM=xterm-256color" in out
            await ws.send_bytes(bytes([1]) + (120).to_bytes(2, "big") + (40).to_bytes(2, "big"))
            await ws.send_bytes(b"stty size; echo mark-$((7*7))\n")
            out = await read_until(ws, b"mark-49")
            assert b"40 120" in out
            await ws.send_bytes(b"exit\n")
            closed = await ws.receive(timeout=10)
            while closed.type == aiohttp.WSMsgType.BINARY:
                closed = await ws.receive(timeout=10)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    asyncio.run(session())
    refused = proxy_env.server.http.get(f"/ssh/{name}/session")
    assert refused.status_code == 401


@pytest.mark.parametrize("limit", [{"ssh_allowed_commands": ["uptime"]}, {"ssh_allowed_paths": ["/tmp"]}])
def test_websocket_shell_refused_on_a_restricted_service(proxy_env, sshd, limit):
    """A shell runs anything, so it would bypass an allowlist: refused before any connection upstream."""
    name = _ssh_service(proxy_env, sshd, **limit)
    headers = {"Authorization": f"Bearer {proxy_env.token()}", "Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    resp = proxy_env.server.http.get(f"/ssh/{name}/session", headers=headers)
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"] == "interactive shell not allowed: this service restricts commands or paths"
    assert "ssh_host_key_fingerprint" not in _info(proxy_env, name)  # no connection was made


def test_websocket_shell_on_unknown_service_is_a_json_404(proxy_env):
    resp = proxy_env.server.http.get("/ssh/nope/session", headers={"Authorization": f"Bearer {proxy_env.token()}"})
    assert resp.status_code == 404 and resp.json()["error"] == 'service "nope" not found'


def test_ecdsa_openssh_key(proxy_env, sshd):
    key = sshd.add_client_key(kind="ecdsa")
    name = _ssh_service(proxy_env, sshd, key)
    assert _exec(proxy_env, name, "echo ecdsa").json()["stdout"] == "ecdsa\n"


def test_sdk_ssh_methods_sync_and_async(proxy_env, sshd):
    import asyncio

    from vault_proxy import AsyncVaultClient, VaultClient

    name = _ssh_service(proxy_env, sshd)
    remote = f"/tmp/{unique('sdk')}.txt"
    with VaultClient(proxy_env.server.addr, token=proxy_env.token()) as vault:
        result = vault.ssh_exec(name, "echo hi; exit 4", timeout=30)
        assert (result.stdout, result.exit_code, result.ok) == ("hi\n", 4, False)
        assert vault.ssh_upload(name, b"uploaded\n", remote, mode="0600")["bytes"] == 9
        assert vault.ssh_download(name, remote) == b"uploaded\n"

    async def run() -> tuple[str, bytes]:
        async with AsyncVaultClient(proxy_env.server.addr, token=proxy_env.token()) as vault:
            done = await vault.ssh_exec(name, f"cat {remote}")
            await vault.ssh_upload(name, b"again\n", remote)
            return done.stdout, await vault.ssh_download(name, remote)

    assert asyncio.run(run()) == ("uploaded\n", b"again\n")
