"""A real OpenSSH sshd on 127.0.0.1 for tests: key-only login as the user that runs the tests.

Everything (keys, ``sshd_config``, ``authorized_keys``, ``sshd.log``) lives in ``workdir``. As root sshd runs as
root and the tests log in as ``root`` (``PermitRootLogin prohibit-password``); as a normal user it runs
unprivileged and only that user can log in. sshd runs in the foreground (``-D -e``) as our child, so
``stop()`` reaps it; it also ends the session processes sshd forked for open connections.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from process_peer import PortTaken, ProcessPeer, free_port

SSHD = "/usr/sbin/sshd"  # sshd re-execs itself, so it must be started by absolute path
START_TIMEOUT = 15.0
KEY_KINDS = {"ed25519": [], "rsa": ["-b", "2048"], "ecdsa": ["-b", "256"]}


def _keygen(path: Path, kind: str, comment: str, passphrase: str = "", extra: Sequence[str] = ()) -> None:
    args = ["ssh-keygen", "-q", "-t", kind, *KEY_KINDS[kind], "-N", passphrase, "-C", comment, *extra, "-f", str(path)]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ssh-keygen -t {kind} failed: {(done.stderr or done.stdout).strip()}")


def _children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs, from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


class Sshd(ProcessPeer):
    """``with Sshd(workdir) as sshd:`` or ``start()`` / ``stop()``; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, extra_config: Sequence[str] = ()) -> None:
        """``extra_config``: more ``sshd_config`` lines, appended after the defaults."""
        self.workdir = Path(workdir).resolve()
        self.extra_config = list(extra_config)
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.port = 0
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.client_key_path = self.workdir / "client_key"
        self.authorized_keys_path = self.workdir / "authorized_keys"
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.client_key_text = ""
        self.client_pub = ""
        self.host_key_line = ""
        self.host_fingerprint = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._extra_keys = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        if not self.host_key_path.exists():
            _keygen(self.host_key_path, "ed25519", "sshd-test-host")
        if not self.client_key_path.exists():
            _keygen(self.client_key_path, "ed25519", "vault-test-client")
            self.authorized_keys_path.write_text(self.client_key_path.with_suffix(".pub").read_text())
            self.authorized_keys_path.chmod(0o600)
        self.client_key_text = self.client_key_path.read_text()
        self.client_pub = self.client_key_path.with_suffix(".pub").read_text().strip()
        self._read_host_key()
        if os.geteuid() == 0:
            # sshd as root chroots its pre-auth child here: root-owned, not group/world-writable.
            run_dir = Path("/run/sshd")
            run_dir.mkdir(mode=0o755, exist_ok=True)
            os.chown(run_dir, 0, 0)
            run_dir.chmod(0o755)
        if self.port:
            self._launch()
            return self
        for attempt in range(5):
            self.port = free_port()
            try:
                self._launch()
                return self
            except PortTaken:
                if attempt == 4:
                    raise
        return self

    def stop(self) -> None:
        """Stop sshd and the session processes it forked; always reaps sshd."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        sessions = _descendants(proc.pid)
        try:
            for pid in sessions:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        finally:
            proc.wait()
        deadline = time.monotonic() + 2
        while any(_alive(pid) for pid in sessions) and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in sessions:
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    # -- test helpers ---------------------------------------------------------------------------------

    @property
    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:PORT ssh-ed25519 AAAA...``, a known_hosts entry pinning the current host key."""
        return f"[{self.host}]:{self.port} {self.host_key_line}"

    def new_host_key(self) -> None:
        """Replace the host key with a fresh one and restart sshd on the same port (open sessions stay)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.terminate()
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            finally:
                proc.wait()
        for path in (self.host_key_path, self.host_key_path.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        _keygen(self.host_key_path, "ed25519", "sshd-test-host")
        self._read_host_key()
        if proc is not None:
            self._launch()

    def add_client_key(self, *, kind: str = "ed25519", passphrase: str = "", fmt: str = "openssh") -> str:
        """Authorize one more client key and return its private key text.

        ``kind``: ed25519 | rsa (2048 bits) | ecdsa (P-256); ``fmt``: openssh | pem (``ssh-keygen -m PEM``:
        PKCS#1 / SEC1, rsa and ecdsa only; an encrypted PEM needs a passphrase of at least 5 characters).
        """
        if kind not in KEY_KINDS:
            raise ValueError(f"kind must be one of {sorted(KEY_KINDS)}, not {kind!r}")
        if fmt not in ("openssh", "pem"):
            raise ValueError(f"fmt must be 'openssh' or 'pem', not {fmt!r}")
        if fmt == "pem" and kind == "ed25519":
            raise ValueError("ssh-keygen cannot write an ed25519 key as PEM")
        self._extra_keys += 1
        path = self.workdir / f"client_key_{self._extra_keys}_{kind}_{fmt}"
        extra = ["-m", "PEM"] if fmt == "pem" else []
        _keygen(path, kind, f"vault-test-client-{self._extra_keys}", passphrase, extra)
        with self.authorized_keys_path.open("a") as keys:
            keys.write(path.with_suffix(".pub").read_text())
        return path.read_text()

    def processes(self, pattern: str) -> list[int]:
        """PIDs (not this process, no zombies) whose full command line contains ``pattern``."""
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            pid = int(cmdline.parent.name)
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pid != os.getpid() and pattern in text:
                found.append(pid)
        return sorted(found)

    # -- internals ------------------------------------------------------------------------------------

    def _read_host_key(self) -> None:
        pub = self.host_key_path.with_suffix(".pub")
        self.host_key_line = " ".join(pub.read_text().split()[:2])
        done = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True, check=True, timeout=30
        )
        self.host_fingerprint = done.stdout.split()[1]

    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "# the workdir may be below /tmp (mode 1777), which StrictModes rejects",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            *self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self) -> None:
        """Write the config, check it with ``sshd -t``, start sshd and wait for its listening line."""
        self._write_config()
        check = subprocess.run(
            [SSHD, "-t", "-f", str(self.config_path)], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t rejected {self.config_path}: {(check.stderr or check.stdout).strip()}")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = f"Server listening on {self.host} port {self.port}."
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            if ready in text:
                return
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                if "Address already in use" in text:
                    raise PortTaken(f"port {self.port} is taken: {text.strip()}")
                raise RuntimeError(f"sshd did not start on port {self.port} in {START_TIMEOUT:.0f} s: {text.strip()}")
            time.sleep(0.01)
