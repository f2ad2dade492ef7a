"""Server start-up flags: refusals, unix socket, TLS, env-var config, graceful SIGTERM."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from helpers import free_port, make_temp_dir
from raw_server import SERVER, run_server, stop, wait_health, write_tls_files


@pytest.fixture
def data_dir() -> Path:
    return make_temp_dir() / "data"


@pytest.mark.parametrize("listen", ["0.0.0.0:8390", "[::]:8390", "192.0.2.10:8390"])
def test_non_loopback_without_tls_is_refused(data_dir, listen):
    result = subprocess.run([*SERVER, "--listen", listen, "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode != 0
    assert "without TLS" in result.stderr


def test_tls_cert_without_key_is_refused(data_dir, tmp_path):
    cert = tmp_path / "cert.pem"
    trustme.CA().issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(cert))
    result = subprocess.run([*SERVER, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir),
                             "--tls-cert", str(cert)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode != 0
    assert "--tls-cert and --tls-key must be given together" in result.stderr


def test_bad_listen_value_is_a_clear_error(data_dir):
    result = subprocess.run([*SERVER, "--listen", "nonsense", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode != 0
    assert "host:port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_bad_audit_max_mb_is_a_clear_error(data_dir, value):
    result = subprocess.run([*SERVER, "--audit-max-mb", value, "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert "Invalid value for '--audit-max-mb'" in result.stderr and "MiB" in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_audit_max_mb_flag_rotates_the_audit_log(start_server, secrets):
    server = start_server(audit_max_mb="0.001")  # ~1 KiB: a few request lines per file
    server.unlock(secrets.new("master-pw"))
    for _ in range(20):
        assert server.http.get("/services", headers=server.admin_headers()).status_code == 200
    server.stop()
    rotated = sorted(server.data_dir.glob("audit.jsonl.*"))
    assert len(rotated) >= 3, rotated
    assert all(path.stat().st_size < 4096 for path in rotated)
    verified = server.cli("audit", "verify", "--password-stdin", str(server.audit_path), input=server.password + "\n")
    assert verified.returncode == 0 and verified.stdout.startswith("OK: "), verified.stdout + verified.stderr


def test_serves_https_with_cert_and_key(data_dir, tmp_path):
    cert, key, ca_pem = write_tls_files(tmp_path)
    port = free_port()
    proc = run_server("--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
                      "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(ca_pem))
        with httpx.Client(verify=context) as client:
            response = wait_health(client, f"https://127.0.0.1:{port}/health", proc)
            assert response.json() == {"status": "locked"}
        # vault-cli trusts a private CA with --ca-file (or VAULT_CACERT), and fails clearly without it.
        addr = f"https://127.0.0.1:{port}"
        cli = [sys.executable, "-m", "vault_proxy.cli", "--addr", addr]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SSL_CERT"))}
        run = {"capture_output": True, "text": True, "timeout": 60, "env": env}
        done = subprocess.run([*cli, "--ca-file", str(ca_pem), "health"], **run)
        assert done.returncode == 0 and done.stdout == "vault: locked\n", done.stderr
        done = subprocess.run([*cli, "health"], **{**run, "env": {**env, "VAULT_CACERT": str(ca_pem)}})
        assert done.returncode == 0, done.stderr
        done = subprocess.run([*cli, "health"], **run)
        assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.startswith("vault-server unreachable: ") and "CERTIFICATE_VERIFY_FAILED" in done.stderr
    finally:
        code, _, out = stop(proc)
    assert f"https://127.0.0.1:{port}" in out


def test_unix_socket_from_env_var_with_mode_0660(data_dir):
    sock = make_temp_dir() / "vault.sock"
    proc = run_server(env={"VAULT_PROXY_LISTEN": f"unix:{sock}", "VAULT_PROXY_DATA_DIR": str(data_dir)})
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
            response = wait_health(client, "http://vault/health", proc)
            assert response.json() == {"status": "locked"}
            assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
            unlocked = client.post("http://vault/auth/unlock", json={"password": "socket-pw-1"})
            assert unlocked.status_code == 200
    finally:
        code, _, out = stop(proc)
    assert code == 0
    assert f"unix:{sock}" in out and str(data_dir) in out
    assert (data_dir / "vault.enc").exists()


def test_sigterm_stops_within_five_seconds_and_starts_locked(start_server):
    server = start_server()
    server.unlock("sigterm-pw-1")
    code = server.stop()
    assert code == 0 and not server.last_stop_forced
    server.start()
    assert server.http.get("/health").json() == {"status": "locked"}


def test_start_line_names_address_and_data_dir(start_server):
    server = start_server()
    log = server.log_text()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert str(server.data_dir) in log


def test_running_server_writes_no_core_file(server):
    """The hardening runs in the real server process: its core-file limit is 0 (and it is not dumpable)."""
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text().splitlines()
    core = next(line for line in limits if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core


def test_start_up_names_the_event_loop_and_prints_no_dependency_warnings(start_server):
    """#16 defect 6: uvloop is a dependency (Linux/CPython) and the loop in use is logged; asyncssh's
    DSA deprecation warnings from cryptography no longer appear at every start."""
    server = start_server()
    log = server.log_text()
    assert "event loop: uvloop " in log
    assert "DSA" not in log and "Warning" not in log
