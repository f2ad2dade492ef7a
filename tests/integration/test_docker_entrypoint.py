"""The container entrypoint (deploy/docker-entrypoint.sh) and health check, run outside Docker.

No Docker engine runs here, so the script runs on this machine with ``VAULT_PROXY_DATA_DIR`` pointing
at a temp dir instead of /data and ``VAULT_PROXY_LISTEN`` at a free loopback port (with
``VAULT_PROXY_AUTO_TLS=always``, since a loopback address alone needs no certificate). The real
vault-server answers ``/health`` over HTTPS, verified against the certificate the script made.
The container's own default (0.0.0.0:8390) runs for real only inside a fresh network namespace
(``unshare --net``, as a container has); the script's decisions for every kind of address are
checked with a stub ``vault-server`` on PATH that records its arguments and environment.

The last test runs the server under the kernel's MemoryDenyWriteExecute (PR_SET_MDWE), the setting the
systemd unit (deploy/vault-proxy.service) turns on.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from helpers import free_port, make_temp_dir

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker-healthcheck.py"
VENV_BIN = Path(sys.executable).parent
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
RUN_TIMEOUT = 30.0
FINGERPRINT = re.compile(r"SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
LISTENING = re.compile(r"vault-server listening on (\S+)")


@pytest.fixture(scope="module", autouse=True)
def _needs_openssl() -> None:
    if subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).returncode != 0:
        pytest.fail("openssl is not installed: the entrypoint needs it (Debian package openssl)")
    if not (VENV_BIN / "vault-server").exists():
        pytest.fail(f"vault-server is not installed in {VENV_BIN}")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any VAULT_* setting, the virtualenv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SSL_CERT_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["VAULT_PROXY_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def der_fingerprint(pem_path: Path) -> str:
    """SHA-256 of the first certificate in ``pem_path``, as openssl prints it (AB:CD:...)."""
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def strict_context(cafile: Path) -> ssl.SSLContext:
    """What a careful client does: verify chain and host name; X509_STRICT as Python 3.13+ sets it."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


class Entrypoint:
    """One run of the entrypoint as a server: started, waited for, stopped (every wait bounded)."""

    def __init__(self, env: dict[str, str], log: Path, *args: str, preexec_fn=None) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(ENTRYPOINT), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self) -> str:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            match = LISTENING.search(self.text())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"entrypoint exited with {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.05)
        pytest.fail(f"server not listening after {READY_TIMEOUT}s:\n{self.text()}")

    def fingerprint(self) -> str:
        match = FINGERPRINT.search(self.text())
        assert match, f"no fingerprint printed:\n{self.text()}"
        return match.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def launch() -> Iterator:
    """``launch(env, *args)`` starts the entrypoint; every server started is stopped at teardown."""
    started: list[Entrypoint] = []
    counter = iter(range(1000))

    def start(env: dict[str, str], *args: str, preexec_fn=None) -> Entrypoint:
        log = Path(env["VAULT_PROXY_DATA_DIR"]).parent / f"entrypoint-{next(counter)}.log"
        entry = Entrypoint(env, log, *args, preexec_fn=preexec_fn)
        started.append(entry)
        return entry

    yield start
    for entry in started:
        entry.stop()


@pytest.fixture
def data_dir() -> Path:
    return make_temp_dir("vp-ep-") / "data"


def loopback_tls_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    settings = {"VAULT_PROXY_LISTEN": f"127.0.0.1:{port}", "VAULT_PROXY_AUTO_TLS": "always", **extra}
    return base_env(data_dir, **settings)


def health(url: str, cafile: Path, host: str = "127.0.0.1") -> dict:
    with httpx.Client(verify=strict_context(cafile), timeout=5.0, trust_env=False) as client:
        response = client.get(url.replace("127.0.0.1", host) + "/health")
    assert response.status_code == 200
    return response.json()


# --------------------------------------------------------------------------- real server


def test_first_start_generates_a_certificate_and_later_starts_reuse_it(launch, data_dir: Path):
    port = free_port()
    env = loopback_tls_env(data_dir, port)
    cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"

    first = launch(env)
    url = first.wait_listening()
    assert url == f"https://127.0.0.1:{port}"
    assert "generated a self-signed TLS certificate" in first.text()
    fingerprint = first.fingerprint()
    assert fingerprint == der_fingerprint(cert), "the printed fingerprint is not the certificate's"
    assert health(url, cert) == {"status": "locked"}
    assert health(url, cert, host="localhost") == {"status": "locked"}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "tls").stat().st_mode) == 0o700
    assert [p.name for p in (data_dir / "tls").iterdir() if p.name.startswith(".")] == [], "work files left"
    assert "PRIVATE KEY" not in first.text()
    assert first.stop() == 0
    pem, key_pem = cert.read_bytes(), key.read_bytes()

    second = launch(env)
    url = second.wait_listening()
    assert "generated" not in second.text()
    assert second.fingerprint() == fingerprint
    assert (cert.read_bytes(), key.read_bytes()) == (pem, key_pem)
    assert health(url, cert) == {"status": "locked"}


def test_generated_certificate_is_p256_for_local_names(data_dir: Path, launch):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    env = loopback_tls_env(data_dir, free_port(), VAULT_PROXY_TLS_SAN="DNS:vault.example.internal,IP:192.0.2.10")
    launch(env).wait_listening()
    cert = x509.load_pem_x509_certificate((data_dir / "tls" / "cert.pem").read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    expected = {"localhost", "vault.example.internal"}
    if re.fullmatch(r"[A-Za-z0-9.-]+", os.uname().nodename) and os.uname().nodename != "localhost":
        expected.add(os.uname().nodename)  # the container's hostname, inside Docker
    assert set(names.get_values_for_type(x509.DNSName)) == expected
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "192.0.2.10"}
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False, "the generated key must not be able to sign other certificates"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=824) < lifetime <= datetime.timedelta(days=826)


def test_certificate_the_user_put_in_the_tls_dir_is_used_as_is(launch, data_dir: Path):
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    tls = data_dir / "tls"
    tls.mkdir(parents=True, mode=0o700)
    leaf.private_key_pem.write_to_path(str(tls / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    ca_file = data_dir.parent / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    before = (tls / "cert.pem").read_bytes(), (tls / "key.pem").read_bytes()

    entry = launch(loopback_tls_env(data_dir, free_port()))
    url = entry.wait_listening()
    assert "generated" not in entry.text()
    assert entry.fingerprint() == der_fingerprint(tls / "cert.pem")
    assert health(url, ca_file) == {"status": "locked"}
    assert ((tls / "cert.pem").read_bytes(), (tls / "key.pem").read_bytes()) == before


def test_certificate_given_by_environment_is_used_and_nothing_is_generated(launch, data_dir: Path):
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    elsewhere = make_temp_dir("vp-ep-certs-")
    leaf.private_key_pem.write_to_path(str(elsewhere / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(elsewhere / "cert.pem"))
    ca.cert_pem.write_to_path(str(elsewhere / "ca.pem"))
    env = loopback_tls_env(
        data_dir,
        free_port(),
        VAULT_PROXY_TLS_CERT=str(elsewhere / "cert.pem"),
        VAULT_PROXY_TLS_KEY=str(elsewhere / "key.pem"),
    )
    entry = launch(env)
    url = entry.wait_listening()
    assert health(url, elsewhere / "ca.pem") == {"status": "locked"}
    assert entry.fingerprint() == der_fingerprint(elsewhere / "cert.pem")
    assert not (data_dir / "tls").exists()


def test_loopback_address_gets_plain_http_by_default(launch, data_dir: Path):
    port = free_port()
    entry = launch(base_env(data_dir, VAULT_PROXY_LISTEN=f"127.0.0.1:{port}"))
    assert entry.wait_listening() == f"http://127.0.0.1:{port}"
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5.0, trust_env=False).json() == {"status": "locked"}
    assert not (data_dir / "tls").exists()


def test_cli_and_sdk_trust_the_generated_certificate(launch, data_dir: Path):
    """VAULT_ADDR=https://... and SSL_CERT_FILE=<cert> (the generic way; the docs use VAULT_CACERT)."""
    from vault_proxy import VaultClient

    port = free_port()
    entry = launch(loopback_tls_env(data_dir, port))
    url = entry.wait_listening()
    cert = data_dir / "tls" / "cert.pem"
    home = make_temp_dir("vp-ep-home-")
    cli_env = {k: v for k, v in base_env(data_dir).items() if k != "VAULT_PROXY_DATA_DIR"}
    cli_env.update(HOME=str(home), VAULT_ADDR=url)
    cli = [str(VENV_BIN / "vault-cli")]

    untrusted = subprocess.run([*cli, "health"], env=cli_env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr.lower(), untrusted.stderr

    trusted_env = {**cli_env, "SSL_CERT_FILE": str(cert)}
    result = subprocess.run([*cli, "health"], env=trusted_env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "vault: locked"  # the Go tool's text (SPEC §14)
    password = "entrypoint-test-master-pw-" + os.urandom(4).hex()
    result = subprocess.run(
        [*cli, "unlock", "--password-stdin"],
        input=password + "\n",
        env=trusted_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert (home / ".vault-proxy" / "session").exists()

    with VaultClient(url, verify=str(cert)) as client:  # the SDK takes the certificate directly
        assert client.health() == {"status": "unlocked"}


NETNS_SCRIPT = r"""
ip link set lo up
"$ENTRYPOINT" > "$LOG" 2>&1 &
pid=$!
i=0
until grep -q "listening on" "$LOG"; do
    i=$((i + 1))
    if [ "$i" -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
done
"$PYTHON" "$HEALTHCHECK"
echo "healthcheck=$?"
"$PYTHON" -c '
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[1])
print("verified=" + urllib.request.urlopen("https://127.0.0.1:8390/health", context=context, timeout=5).read().decode())
' "$CERT"
kill -TERM "$pid"
wait "$pid"
echo "server=$?"
"""


def test_container_default_command_in_a_private_network_namespace(data_dir: Path):
    """What ``docker run IMAGE`` does: 0.0.0.0:8390 with a generated certificate, in a netns of its own.

    Only the data dir is overridden (/data does not exist here). The wildcard bind happens in a fresh
    network namespace that has nothing but its own loopback, as a container has.
    """
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    probe = subprocess.run([unshare, "--net", ip, "link", "set", "lo", "up"], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    log = data_dir.parent / "netns.log"
    env = base_env(
        data_dir,
        ENTRYPOINT=str(ENTRYPOINT),
        HEALTHCHECK=str(HEALTHCHECK),
        PYTHON=sys.executable,
        LOG=str(log),
        CERT=str(data_dir / "tls" / "cert.pem"),
    )
    result = subprocess.run([unshare, "--net", "sh", "-c", NETNS_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=READY_TIMEOUT + 3 * RUN_TIMEOUT)  # fmt: skip
    server_log = log.read_text() if log.exists() else ""
    report = f"{result.stdout}\n{result.stderr}\n--- server log ---\n{server_log}"
    assert "vault-server listening on https://0.0.0.0:8390" in server_log, report
    assert "healthcheck=0" in result.stdout and "vault-server at https://127.0.0.1:8390/health: locked" in result.stdout
    assert 'verified={"status": "locked"}' in result.stdout or 'verified={"status":"locked"}' in result.stdout, report
    assert "server=0" in result.stdout, report
    assert FINGERPRINT.search(server_log).group(1) == der_fingerprint(data_dir / "tls" / "cert.pem")


# --------------------------------------------------------------------------- health check script


def healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def test_healthcheck_follows_the_listen_setting(launch, data_dir: Path):
    port = free_port()
    sock = make_temp_dir("vp-ep-sock-") / "vault.sock"
    listen = f"127.0.0.1:{port},unix:{sock}"
    launch(loopback_tls_env(data_dir, port, VAULT_PROXY_LISTEN=listen)).wait_listening()

    result = healthcheck(VAULT_PROXY_LISTEN=listen)  # first address: https on the TCP port
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vault-server at https://127.0.0.1:{port}/health: locked"
    result = healthcheck(f"https://127.0.0.1:{port}/health")
    assert result.returncode == 0, result.stderr
    result = healthcheck(VAULT_PROXY_LISTEN=f"unix:{sock}")
    assert result.returncode == 0 and result.stdout.strip() == f"vault-server at unix:{sock}: locked", result


def test_healthcheck_falls_back_to_http_and_fails_when_nothing_answers(launch, data_dir: Path):
    port = free_port()
    launch(base_env(data_dir, VAULT_PROXY_LISTEN=f"127.0.0.1:{port}")).wait_listening()
    result = healthcheck(VAULT_PROXY_LISTEN=f"0.0.0.0:{port}")  # the wildcard becomes loopback
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vault-server at http://127.0.0.1:{port}/health: locked"

    idle = free_port()
    result = healthcheck(VAULT_PROXY_LISTEN=f"127.0.0.1:{idle}")
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: ") and f"127.0.0.1:{idle}" in result.stderr


# --------------------------------------------------------------------------- decisions (stub server)


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``vault-server`` records its argv and VAULT_PROXY_* variables and exits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "vault-server"
    stub.write_text(
        "#!/bin/sh\n"
        ': > "$STUB_OUT/args"\n'
        'for arg in "$@"; do printf "%s\\n" "$arg" >> "$STUB_OUT/args"; done\n'
        'env | grep "^VAULT_PROXY_" | sort > "$STUB_OUT/env"\n'
    )
    stub.chmod(0o755)
    env = base_env(tmp_path / "data", STUB_OUT=str(tmp_path))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def run_stub(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[str], dict[str, str]]:
    out = Path(env["STUB_OUT"])
    for name in ("args", "env"):
        (out / name).unlink(missing_ok=True)
    result = subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if not (out / "args").exists():
        return result, [], {}
    argv = (out / "args").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines())
    return result, argv, seen


def test_container_default_listens_on_all_interfaces_with_a_generated_certificate(stub_env):
    result, argv, seen = run_stub(stub_env)
    assert result.returncode == 0, result.stderr
    assert argv == []
    data = stub_env["VAULT_PROXY_DATA_DIR"]
    assert seen["VAULT_PROXY_LISTEN"] == "0.0.0.0:8390"
    assert seen["VAULT_PROXY_DATA_DIR"] == data
    assert seen["VAULT_PROXY_TLS_CERT"] == f"{data}/tls/cert.pem"
    assert seen["VAULT_PROXY_TLS_KEY"] == f"{data}/tls/key.pem"
    assert FINGERPRINT.search(result.stderr).group(1) == der_fingerprint(Path(data) / "tls" / "cert.pem")


@pytest.mark.parametrize(
    ("listen_env", "args", "tls"),
    [
        ("127.0.0.1:8390", [], False),
        ("[::1]:8390", [], False),
        ("localhost:8390", [], False),
        ("unix:/run/vault-proxy/vault.sock", [], False),
        ("127.0.0.1:8390,0.0.0.0:8391", [], True),
        ("[::]:8390", [], True),
        ("0.0.0.0:8390", ["--listen", "127.0.0.1:8390"], False),  # flags replace the variable
        ("127.0.0.1:8390", ["--listen=192.0.2.1:8390"], True),
        ("127.0.0.1:8390", ["--token-ttl", "2h", "--listen", "unix:/tmp/x.sock", "--listen", "[::]:1"], True),
    ],
)
def test_certificate_only_when_an_address_needs_tls(stub_env, listen_env, args, tls):
    stub_env["VAULT_PROXY_LISTEN"] = listen_env
    result, argv, seen = run_stub(stub_env, *args)
    assert result.returncode == 0, result.stderr
    assert argv == args, "extra arguments reach vault-server unchanged"
    assert ("VAULT_PROXY_TLS_CERT" in seen) is tls
    assert (Path(stub_env["VAULT_PROXY_DATA_DIR"]) / "tls" / "cert.pem").exists() is tls


def test_tls_cert_flag_means_the_user_brings_the_certificate(stub_env, tmp_path):
    result, argv, seen = run_stub(stub_env, "--tls-cert", "/x/cert.pem", "--tls-key", "/x/key.pem")
    assert result.returncode == 0, result.stderr
    assert argv == ["--tls-cert", "/x/cert.pem", "--tls-key", "/x/key.pem"]
    assert "VAULT_PROXY_TLS_CERT" not in seen
    assert not (tmp_path / "data" / "tls").exists()


def test_auto_tls_setting(stub_env, tmp_path):
    stub_env["VAULT_PROXY_AUTO_TLS"] = "never"
    result, _, seen = run_stub(stub_env)
    assert result.returncode == 0 and "VAULT_PROXY_TLS_CERT" not in seen
    stub_env["VAULT_PROXY_AUTO_TLS"] = "sometimes"
    result, argv, _ = run_stub(stub_env)
    assert result.returncode == 1 and argv == []
    assert "VAULT_PROXY_AUTO_TLS must be auto, always or never" in result.stderr


def test_commands_other_than_the_server_run_as_given(stub_env, tmp_path):
    result = subprocess.run(
        [str(ENTRYPOINT), "sh", "-c", 'echo "ran $0 $1"', "a b", "c"],
        env=stub_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0 and result.stdout == "ran a b c\n"
    assert not (tmp_path / "data").exists(), "no set-up for a command that is not the server"
    result, argv, seen = run_stub(stub_env, "vault-server", "--token-ttl", "1h")
    assert result.returncode == 0 and argv == ["--token-ttl", "1h"] and "VAULT_PROXY_TLS_CERT" in seen


def test_help_needs_no_certificate(stub_env, tmp_path):
    result, argv, seen = run_stub(stub_env, "--help")
    assert result.returncode == 0 and argv == ["--help"]
    assert not (tmp_path / "data").exists()


def test_half_a_key_pair_is_refused_not_overwritten(stub_env, tmp_path):
    tls = tmp_path / "data" / "tls"
    tls.mkdir(parents=True)
    (tls / "key.pem").write_text("the user's key\n")
    result, argv, _ = run_stub(stub_env)
    assert result.returncode == 1 and argv == []
    assert "holds only one of cert.pem and key.pem" in result.stderr
    assert (tls / "key.pem").read_text() == "the user's key\n" and not (tls / "cert.pem").exists()


def _expired_certificate(path: Path, common_name: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def test_expired_generated_certificate_is_replaced_but_a_users_is_kept(stub_env, tmp_path):
    tls = tmp_path / "data" / "tls"
    _expired_certificate(tls, "vault-proxy self-signed")
    old = der_fingerprint(tls / "cert.pem")
    result, _, _ = run_stub(stub_env)
    assert result.returncode == 0, result.stderr
    assert "has expired: making a new one" in result.stderr
    assert der_fingerprint(tls / "cert.pem") != old
    assert FINGERPRINT.search(result.stderr).group(1) == der_fingerprint(tls / "cert.pem")

    _expired_certificate(tls, "vault.example.com")
    theirs = der_fingerprint(tls / "cert.pem")
    result, _, seen = run_stub(stub_env)
    assert result.returncode == 0, result.stderr
    assert "WARNING: the certificate" in result.stderr and "expired" in result.stderr
    assert der_fingerprint(tls / "cert.pem") == theirs and seen["VAULT_PROXY_TLS_CERT"] == str(tls / "cert.pem")


# --------------------------------------------------------------------------- systemd's MemoryDenyWriteExecute

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _deny_write_execute() -> None:
    """In the child before exec: refuse writable+executable memory from now on (inherited by exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_supported() -> bool:
    probe = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_deny_write_execute, capture_output=True)
    return probe.returncode == 0


def test_server_runs_with_memory_deny_write_execute(launch, data_dir: Path):
    """deploy/vault-proxy.service sets MemoryDenyWriteExecute=yes: TLS, Argon2id unlock, AES-GCM all work."""
    try:
        supported = _mdwe_supported()
    except (subprocess.SubprocessError, OSError):
        supported = False
    if not supported:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    check = subprocess.run(
        [sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
        preexec_fn=_deny_write_execute,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert check.returncode != 0 and "PermissionError" in check.stderr, "MDWE did not refuse a W+X mapping"

    entry = launch(loopback_tls_env(data_dir, free_port()), preexec_fn=_deny_write_execute)
    url = entry.wait_listening()
    cert = data_dir / "tls" / "cert.pem"
    with httpx.Client(base_url=url, verify=strict_context(cert), timeout=30.0, trust_env=False) as client:
        password = "mdwe-test-master-pw-" + os.urandom(4).hex()
        response = client.post("/auth/unlock", json={"password": password})
        assert response.status_code == 200, response.text
        token = response.json()["id"]
        service = {"name": "mdwe", "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": "x"}}
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/services", json=service, headers=headers).status_code in (200, 201)
        assert client.get("/health").json() == {"status": "unlocked"}
    assert entry.proc.poll() is None, entry.text()
