"""Self-test of the OpenSSH sshd peer (tests/peers/sshd.py) used by the SSH integration tests."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "peers"))

import sshd as sshd_peer  # noqa: E402
from sshd import SSHD, Sshd  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path(SSHD).exists() or shutil.which("ssh-keygen") is None,
    reason=f"needs OpenSSH ({SSHD} and ssh-keygen): run scripts/install-test-peers.sh as root",
)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with Sshd(tmp_path / "sshd") as peer:
        yield peer


def connect(peer: Sshd, known_hosts_line: str | None = None, key: str | None = None, passphrase: str | None = None):
    """An asyncssh connection that trusts only ``known_hosts_line`` and offers only ``key`` (no agent, no config)."""
    return asyncssh.connect(
        peer.host,
        peer.port,
        username=peer.user,
        client_keys=[asyncssh.import_private_key(key or peer.client_key_text, passphrase)],
        known_hosts=asyncssh.import_known_hosts(known_hosts_line or peer.known_hosts_line),
        agent_path=None,
        config=None,
        connect_timeout=5,
    )


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_key_login_runs_a_command(sshd: Sshd) -> None:
    assert sshd.host_key_line.startswith("ssh-ed25519 AAAA") and len(sshd.host_key_line.split()) == 2
    assert sshd.host_fingerprint.startswith("SHA256:")
    assert sshd.client_key_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert sshd.client_pub.startswith("ssh-ed25519 ")
    assert 20000 <= sshd.port <= 32767
    async with connect(sshd) as conn:
        assert conn.get_server_host_key().get_fingerprint("sha256") == sshd.host_fingerprint
        result = await conn.run("echo hello; id -un", check=True)
    assert result.stdout == f"hello\n{sshd.user}\n"
    assert f"Accepted publickey for {sshd.user} from 127.0.0.1" in sshd.log_text()


async def test_new_host_key_refuses_a_client_pinned_to_the_old_one(sshd: Sshd) -> None:
    old_line, old_fp, port = sshd.known_hosts_line, sshd.host_fingerprint, sshd.port
    sshd.new_host_key()
    assert sshd.port == port
    assert sshd.host_fingerprint != old_fp and sshd.known_hosts_line != old_line
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(sshd, known_hosts_line=old_line):
            pass
    async with connect(sshd) as conn:
        assert conn.get_server_host_key().get_fingerprint("sha256") == sshd.host_fingerprint
        assert (await conn.run("echo hello", check=True)).stdout == "hello\n"


async def test_processes_finds_a_remote_command_until_it_is_killed(sshd: Sshd) -> None:
    async with connect(sshd) as conn:
        started = await conn.run("sleep 4242 >/dev/null 2>&1 & echo $!", check=True)
        pid = int(started.stdout)
        assert await wait_for(lambda: pid in sshd.processes("sleep 4242"))
        await conn.run(f"kill {pid}", check=True)
    assert await wait_for(lambda: not sshd.processes("sleep 4242"))


@pytest.mark.parametrize(
    ("kind", "fmt", "passphrase", "header"),
    [
        ("rsa", "pem", "pem-Secret-1", "-----BEGIN RSA PRIVATE KEY-----"),
        ("ecdsa", "openssh", "", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ],
    ids=["rsa-pem-passphrase", "ecdsa-openssh"],
)
async def test_extra_client_key_logs_in(sshd: Sshd, kind: str, fmt: str, passphrase: str, header: str) -> None:
    key = sshd.add_client_key(kind=kind, passphrase=passphrase, fmt=fmt)
    assert key.startswith(header)
    assert ("ENCRYPTED" in key) == (fmt == "pem" and bool(passphrase))
    async with connect(sshd, key=key, passphrase=passphrase or None) as conn:
        assert (await conn.run("echo hello", check=True)).stdout == "hello\n"
    assert ("RSA SHA256:" if kind == "rsa" else "ECDSA SHA256:") in sshd.log_text()


def test_add_client_key_rejects_what_it_cannot_make(sshd: Sshd) -> None:
    with pytest.raises(ValueError):
        sshd.add_client_key(kind="dsa")
    with pytest.raises(ValueError):
        sshd.add_client_key(kind="ed25519", fmt="pem")


def test_start_retries_when_the_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken, sshd_peer.free_port()])
        monkeypatch.setattr(sshd_peer, "free_port", lambda: next(ports))
        with Sshd(tmp_path / "sshd") as peer:
            assert peer.port != taken
            assert "Address already in use" in peer.log_text()


def test_bad_config_is_reported(tmp_path: Path) -> None:
    peer = Sshd(tmp_path / "sshd", extra_config=["NoSuchOption yes"])
    with pytest.raises(RuntimeError, match="sshd -t rejected"):
        peer.start()
    assert peer.pid is None


async def test_stop_reaps_sshd_and_its_sessions(tmp_path: Path) -> None:
    peer = Sshd(tmp_path / "sshd").start()
    pid, port = peer.pid, peer.port
    assert pid is not None and peer.processes(str(peer.config_path)) == [pid]
    async with connect(peer) as conn:
        # an open session: its sshd processes are not children of the listener's session group
        process = await conn.create_process("sleep 4343")
        assert await wait_for(lambda: bool(peer.processes("sleep 4343")))
        peer.stop()
        await process.wait_closed()
    assert peer.pid is None
    assert not peer.processes(str(peer.config_path))
    assert await wait_for(lambda: not peer.processes("sleep 4343"))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    peer.stop()  # idempotent
