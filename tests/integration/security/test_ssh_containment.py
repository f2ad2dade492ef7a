"""SSH containment (issue 15, findings 3 and 8), attacked as a hostile agent would: a proxy token, the HTTP API.

The peer is a real OpenSSH sshd (tests/peers/sshd.py). The tests run as root, whose home ``/root`` is a
system location the vault already refuses, so sshd gives the login a throwaway ``$HOME`` (``SetEnv HOME``):
Debian's bash sources ``~/.bashrc`` for every command sshd runs, which is exactly what finding 3 abuses.
Every check of the outcome looks at the sshd user's filesystem directly, never through the vault.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_error, unique, upload_file
from sshd import Sshd

MIB = 1024 * 1024
NO_UPLOADS = "upload not allowed: this service restricts commands and sets no ssh_allowed_paths"


@pytest.fixture(scope="module")
def home_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vp-home-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(home_dir: Path) -> Path:
    """The remote login's ``$HOME``, emptied for each test (a leftover ``.bashrc`` would run on every exec)."""
    for entry in home_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return home_dir


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, home_dir: Path) -> Iterator[Sshd]:
    peer = Sshd(Path(tmp_path_factory.mktemp("sshd")), extra_config=[f"SetEnv HOME={home_dir}"]).start()
    yield peer
    peer.stop()


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """A scratch directory on the host with ``drop/`` (the place uploads may go) and ``victim/`` beside it."""
    (tmp_path / "drop").mkdir()
    (tmp_path / "victim").mkdir()
    return tmp_path


def _service(env, sshd: Sshd, **auth_extra) -> str:
    for line in sshd.client_key_text.splitlines():  # the key's body must reach no response and no log
        if len(line) >= 40 and not line.startswith("-----"):
            env.secrets.add(line)
    key_file = unique("key")
    assert upload_file(env.server, key_file, sshd.client_key_text.encode()).status_code in (200, 201)
    auth = {"type": "ssh_key", "ssh_host": sshd.host, "ssh_port": sshd.port, "ssh_user": sshd.user,
            "ssh_key_file_ref": key_file, **auth_extra}  # fmt: skip
    name = unique("ssh")
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _exec(env, name: str, command: str):
    return env.server.http.post(f"/ssh/{name}/exec", json={"command": command},
                                headers={"Authorization": f"Bearer {env.token()}"}, timeout=60)  # fmt: skip


def _upload(env, name: str, remote_path: str, data: bytes, mode: str = "0644"):
    return env.server.http.post(f"/ssh/{name}/upload", data={"remote_path": remote_path, "mode": mode},
                                files={"file": ("f", data)}, headers={"Authorization": f"Bearer {env.token()}"},
                                timeout=120)  # fmt: skip


def _download(env, name: str, remote_path: str):
    return env.server.http.post(f"/ssh/{name}/download", json={"remote_path": remote_path},
                                headers={"Authorization": f"Bearer {env.token()}"}, timeout=60)  # fmt: skip


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --------------------------------------------------------------------------- finding 3: uploads change what runs


def test_f3_no_uploads_on_a_command_restricted_service_without_allowed_paths(proxy_env, sshd, home, area):
    """The attack: upload ``~/.bashrc`` (or over a script an allowed command runs), then run an allowed command."""
    script = area / "deploy.sh"
    script.write_text("echo deployed\n")
    name = _service(proxy_env, sshd, ssh_allowed_commands=["echo", f"sh {script}"])
    ran = home / "payload-ran"
    bashrc = _upload(proxy_env, name, f"{home}/.bashrc", f"touch {ran}\n".encode())
    over_script = _upload(proxy_env, name, str(script), f"touch {ran}; echo owned\n".encode())
    harmless = _upload(proxy_env, name, f"{area}/notes.txt", b"just notes\n")
    assert _exec(proxy_env, name, "echo hi").json()["stdout"] == "hi\n"
    assert _exec(proxy_env, name, f"sh {script}").json()["stdout"] == "deployed\n"
    assert not ran.exists(), "an uploaded file ran through an allowed command"
    for resp in (bashrc, over_script, harmless):
        assert_error(resp, 403, NO_UPLOADS)
    assert not (home / ".bashrc").exists() and not (area / "notes.txt").exists()
    assert script.read_text() == "echo deployed\n"
    line = [e for e in proxy_env.audit() if e.get("action") == "ssh.upload" and e.get("service") == name][-1]
    assert line["status"] == 403


STARTUP_TARGETS = [
    ".bashrc", ".profile", ".bash_profile", ".bash_login", ".bash_logout", ".zshrc", ".zshenv", ".zprofile",
    ".zlogin", ".cshrc", ".tcshrc", ".kshrc", ".inputrc", ".pam_environment", ".forward", ".gitconfig",
    ".config/systemd/user/evil.service", ".config/autostart/evil.desktop", ".local/bin/ls",
    ".gnupg/gpg-agent.conf", ".ssh/authorized_keys", "project/.git/hooks/post-checkout", "project/.envrc",
]  # fmt: skip


def test_f3_startup_files_and_dot_dirs_are_refused_everywhere(proxy_env, sshd, home):
    """Even where every command is allowed: a start-up file would also run in the operator's next login."""
    name = _service(proxy_env, sshd)
    (home / "project").mkdir()
    for target in STARTUP_TARGETS:
        resp = _upload(proxy_env, name, f"{home}/{target}", b"touch /tmp/should-never-exist\n")
        assert resp.status_code == 400, (target, resp.status_code, resp.text)
        assert "refused" in resp.json()["error"], (target, resp.text)
    assert _listing(home) == ["project"], "a refused upload left something behind"


def test_f3_dot_rule_holds_inside_allowed_paths(proxy_env, sshd, home):
    """``ssh_allowed_paths`` covering a home does not open its start-up files."""
    name = _service(proxy_env, sshd, ssh_allowed_commands=["echo"], ssh_allowed_paths=[str(home)])
    ran = home / "payload-ran"
    resp = _upload(proxy_env, name, f"{home}/.bashrc", f"touch {ran}\n".encode())
    assert_error(resp, 400, contains="refused")
    assert _upload(proxy_env, name, f"{home}/notes.txt", b"fine\n").status_code == 200
    assert _exec(proxy_env, name, "echo hi").json()["stdout"] == "hi\n"
    assert not ran.exists() and _listing(home) == ["notes.txt"]


def test_f3_a_parent_that_resolves_into_a_dot_dir_is_refused(proxy_env, sshd, home, area):
    """``drop/cfg`` -> ``~/.config``: the rule applies to where the path really leads, not to its spelling."""
    (home / ".config" / "autostart").mkdir(parents=True)
    (area / "drop" / "cfg").symlink_to(home / ".config")
    name = _service(proxy_env, sshd)
    for path in (f"{area}/drop/cfg/autostart/evil.desktop", f"{area}/drop/cfg/new/evil.desktop"):
        resp = _upload(proxy_env, name, path, b"[Desktop Entry]\nExec=touch /tmp/x\n")
        assert_error(resp, 400, contains=".config")
    assert _listing(home) == [".config", ".config/autostart"]


@pytest.mark.parametrize("mode", ["4755", "2755", "6755", "04711"])
def test_f3_setuid_and_setgid_modes_are_refused(proxy_env, sshd, area, mode):
    """A set-id file would run with the uploading login's rights for every local user."""
    name = _service(proxy_env, sshd)
    resp = _upload(proxy_env, name, f"{area}/drop/tool", b"#!/bin/sh\nid\n", mode=mode)
    assert_error(resp, 400, contains="setuid")
    assert _listing(area / "drop") == []


# --------------------------------------------------------------------------- finding 8: symlinks and links


def test_f8_symlink_in_last_component_is_replaced_never_followed(proxy_env, sshd, home, area):
    """The attack: an allowed ``ln -s`` plants a link inside the allowed directory, the upload goes over it."""
    drop, victim = area / "drop", area / "victim" / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA-the-operator-key\n")
    (home / ".bashrc").write_text("# the user's own\n")
    name = _service(proxy_env, sshd, ssh_allowed_commands=["ln"], ssh_allowed_paths=[str(drop)])
    for link, target in (("notes.txt", victim), ("rc.txt", home / ".bashrc")):
        assert _exec(proxy_env, name, f"ln -s {target} {drop}/{link}").json()["exit_code"] == 0
        resp = _upload(proxy_env, name, f"{drop}/{link}", b"ssh-ed25519 AAAA-the-attacker-key\n", mode="0640")
        assert resp.status_code == 200, resp.text
        assert resp.json()["remote_path"] == f"{drop}/{link}"
        placed = drop / link
        assert not placed.is_symlink() and stat.S_ISREG(placed.lstat().st_mode)
        assert placed.read_bytes() == b"ssh-ed25519 AAAA-the-attacker-key\n"
        assert placed.stat().st_mode & 0o7777 == 0o640
    assert victim.read_text() == "ssh-ed25519 AAAA-the-operator-key\n"
    assert (home / ".bashrc").read_text() == "# the user's own\n"
    assert _listing(drop) == ["notes.txt", "rc.txt"], "a temporary file was left behind"


def test_f8_dangling_symlink_does_not_create_its_target(proxy_env, sshd, area):
    drop, planted = area / "drop", area / "victim" / "planted"
    name = _service(proxy_env, sshd, ssh_allowed_commands=["ln"], ssh_allowed_paths=[str(drop)])
    assert _exec(proxy_env, name, f"ln -s {planted} {drop}/out.txt").json()["exit_code"] == 0
    assert _upload(proxy_env, name, f"{drop}/out.txt", b"payload\n").status_code == 200
    assert not planted.exists()
    assert not (drop / "out.txt").is_symlink() and (drop / "out.txt").read_bytes() == b"payload\n"


def test_f8_hard_link_is_replaced_not_written_through(proxy_env, sshd, area):
    drop, victim = area / "drop", area / "victim" / "config"
    victim.write_text("original\n")
    name = _service(proxy_env, sshd, ssh_allowed_commands=["ln"], ssh_allowed_paths=[str(drop)])
    assert _exec(proxy_env, name, f"ln {victim} {drop}/config").json()["exit_code"] == 0
    assert _upload(proxy_env, name, f"{drop}/config", b"rewritten\n").status_code == 200
    assert victim.read_text() == "original\n" and (drop / "config").read_text() == "rewritten\n"
    assert os.stat(victim).st_nlink == 1


def test_f8_missing_parents_are_created_and_each_checked(proxy_env, sshd, area):
    drop = area / "drop"
    name = _service(proxy_env, sshd, ssh_allowed_paths=[str(drop)])
    resp = _upload(proxy_env, name, f"{drop}/a/b/c.txt", b"deep\n")
    assert resp.status_code == 200, resp.text
    assert (drop / "a" / "b" / "c.txt").read_bytes() == b"deep\n"
    assert_error(_upload(proxy_env, name, f"{drop}/a/.git/hooks/pre-commit", b"x"), 400, contains="refused")
    assert_error(_upload(proxy_env, name, f"{area}/elsewhere/x.txt", b"x"), 400, contains="ssh_allowed_paths")
    (drop / "sys").symlink_to("/etc")
    assert_error(_upload(proxy_env, name, f"{drop}/sys/new-dir/x.conf", b"x"), 400, contains="/etc")
    assert _listing(area) == ["drop", "drop/a", "drop/a/b", "drop/a/b/c.txt", "drop/sys", "victim"]
    assert not Path("/etc/new-dir").exists()


def test_f8_a_failed_upload_keeps_the_old_file_and_leaves_no_temp_file(proxy_env, sshd, area):
    drop = area / "drop"
    (drop / "app.conf").write_text("old and good\n")
    name = _service(proxy_env, sshd)
    resp = _upload(proxy_env, name, f"{drop}/app.conf", b"\0" * (50 * MIB + 1))
    assert_error(resp, 413, "file too large (max 50 MiB)")
    assert (drop / "app.conf").read_text() == "old and good\n"
    assert _listing(drop) == ["app.conf"]


def test_f8_upload_onto_a_directory_is_a_400(proxy_env, sshd, area):
    (area / "drop" / "sub").mkdir()
    name = _service(proxy_env, sshd)
    assert_error(_upload(proxy_env, name, f"{area}/drop/sub", b"x"), 400, contains="directory")
    assert (area / "drop" / "sub").is_dir()


def test_f8_download_resolves_a_last_component_symlink_and_checks_again(proxy_env, sshd, area):
    """Downloads already resolved symlinks before checking (SPEC §12); kept here as a guard."""
    drop = area / "drop"
    (area / "victim" / "secret.txt").write_text("not for the agent\n")
    (drop / "hosts").symlink_to("/etc/hosts")
    (drop / "leak.txt").symlink_to(area / "victim" / "secret.txt")
    name = _service(proxy_env, sshd, ssh_allowed_paths=[str(drop)])
    assert_error(_download(proxy_env, name, f"{drop}/hosts"), 400, contains="/etc")
    assert_error(_download(proxy_env, name, f"{drop}/leak.txt"), 400, contains="ssh_allowed_paths")


def test_f8_a_client_that_disconnects_mid_upload_changes_nothing(proxy_env, sshd, area):
    """Half a body then a closed socket: the target keeps its old content and no temporary file stays."""
    import socket
    import time
    from urllib.parse import urlsplit

    drop = area / "drop"
    (drop / "app.conf").write_text("old and good\n")
    name = _service(proxy_env, sshd)
    boundary = "vp-boundary-1234"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="remote_path"\r\n\r\n{drop}/app.conf\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    url = urlsplit(proxy_env.server.addr)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(f"POST /ssh/{name}/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {proxy_env.token()}\r\n"
                     f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                     f"Content-Length: {len(head) + 8 * MIB}\r\n\r\n".encode() + head)  # fmt: skip
        for _ in range(8):
            sock.sendall(b"\x01" * (512 * 1024))
        time.sleep(0.5)  # the upload is under way on the host
    deadline = time.monotonic() + 10
    while _listing(drop) != ["app.conf"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _listing(drop) == ["app.conf"]
    assert (drop / "app.conf").read_text() == "old and good\n"


async def test_f8_without_posix_rename_a_symlink_is_still_replaced(sshd, area):
    """Servers without ``posix-rename@openssh.com`` get remove + rename: still never through the link.

    OpenSSH has the extension, so the client is told it has not (the fallback branch, against real sshd).
    """
    import asyncssh

    from vault_proxy.ssh.upload import prepare_target, write_replacing

    drop, victim = area / "drop", area / "victim" / "authorized_keys"
    victim.write_text("operator key\n")
    (drop / "keys").symlink_to(victim)

    async def chunks():
        yield b"attacker key\n"

    key = asyncssh.import_private_key(sshd.client_key_text)
    async with asyncssh.connect(sshd.host, sshd.port, username=sshd.user, client_keys=[key], known_hosts=None,
                                config=None, agent_path=None) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
        sftp._handler._supports_posix_rename = False  # noqa: SLF001 - force the fallback branch
        with pytest.raises(asyncssh.SFTPOpUnsupported):
            await sftp.posix_rename(f"{drop}/nope", f"{drop}/nope2")
        target = await prepare_target(sftp, f"{drop}/keys", [str(drop)])
        assert await write_replacing(sftp, target, chunks(), 0o600) == 13
    assert victim.read_text() == "operator key\n"
    assert not (drop / "keys").is_symlink() and (drop / "keys").read_text() == "attacker key\n"
    assert _listing(drop) == ["keys"]
