"""A real Dovecot IMAP server on 127.0.0.1 for tests: one password user, a Maildir, STARTTLS and IMAPS.

``port`` is plain IMAP offering STARTTLS, ``tls_port`` is implicit TLS (IMAPS); the certificate is for
``127.0.0.1`` and ``localhost`` (and ``host``), issued by ``tls_ca`` (a ``trustme.CA``; ``ca_path`` is its PEM).
One user, ``user`` with a random ``password`` (SHA512-CRYPT in a passwd-file), logs in with PLAIN or LOGIN;
messages put into its Maildir with :meth:`DovecotServer.deliver` are seen by IMAP.

Dovecot runs "rootless" from a self-contained ``dovecot.conf`` (nothing in /etc/dovecot is read): all its
processes run as one unprivileged uid, no chroot; as root, the ``dovecot`` system user. So every file lives in
``workdir``, a new /tmp/vp-dovecot-XXXX owned by that user (it cannot reach pytest's 0700 /tmp/pytest-of-root),
removed by ``stop()``: a restart keeps the ports, user and password, not the mail. ``dovecot -F`` runs as our
child in its own process group, logging to stderr = ``dovecot.log``. ``stop()`` sends SIGTERM to the whole
group (after SIGTERM to the master alone its children can linger 10 s while a client is logged in), reaps the
master and waits until the group is gone (0.01-1 s).

Failed logins answer fast (``auth_failure_delay = 0``, no anvil auth penalty). Plaintext auth needs TLS
(``disable_plaintext_auth = yes``), but Dovecot counts a connection whose client IP equals the server IP as
secure: on 127.0.0.1 a plaintext LOGIN without STARTTLS is allowed and LOGINDISABLED is not advertised. With
``host="127.0.0.2"`` (any 127.x but .1) clients still connect from 127.0.0.1, so the plain port advertises
LOGINDISABLED and refuses LOGIN before STARTTLS. Either way the log line ``Login: user=<...>, ..., TLS,``
(``secured,`` for a plaintext login) tells how a client logged in.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from process_peer import PortTaken, ProcessPeer, free_port

if TYPE_CHECKING:
    import trustme

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
START_TIMEOUT = 15.0
READY_LINE = "starting up for imap"  # logged by the master once every listener is bound


def _greeting(host: str, port: int) -> bytes:
    """The first line the server sends (``* OK ...`` from IMAP), or b"" when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock, sock.makefile("rb") as reader:
            return reader.readline().strip()
    except OSError:
        return b""


def _group_alive(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                found.append(int(stat.parent.name))
    return found


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class DovecotServer(ProcessPeer):
    """``with DovecotServer(tls_ca) as imap:`` or ``start()`` / ``stop()``; see the module docstring."""

    def __init__(
        self,
        tls_ca: trustme.CA,
        *,
        user: str = "alice",
        host: str = "127.0.0.1",
        password: str | None = None,
        mechanisms: str = "plain login",
    ) -> None:
        """``host``: the loopback address to listen on (see the module docstring for 127.0.0.2).

        ``mechanisms``: the SASL mechanisms offered (``AUTH=...``); ``"login"`` alone means no AUTH=PLAIN, so a
        client has to use the LOGIN command. ``password``: a fixed one (e.g. with quotes or non-ASCII).
        """
        self.mechanisms = mechanisms
        self.tls_ca = tls_ca
        self.host = host
        self.port = 0  # plain IMAP + STARTTLS
        self.tls_port = 0  # IMAPS
        self.user = user
        self.password = password or secrets.token_urlsafe(18)
        # as root, every Dovecot process runs as the 'dovecot' system user; otherwise as us
        self._runas = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.workdir = Path("/tmp") / f"vp-dovecot-{secrets.token_hex(6)}"  # made by start(), removed by stop()
        self.config_path = self.workdir / "dovecot.conf"
        self.log_path = self.workdir / "dovecot.log"
        self.ca_path = self.workdir / "ca.pem"  # the TLS CA as PEM
        self.maildir = self.workdir / "mail" / user / "Maildir"
        self._proc: subprocess.Popen[bytes] | None = None
        self._delivered = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            return self
        restart = bool(self.port)  # a restart keeps its ports
        try:
            for attempt in range(5):
                if not restart:
                    self.port = free_port()
                    self.tls_port = free_port({self.port})
                self._prepare()
                try:
                    self._launch()
                    return self
                except PortTaken:
                    if restart or attempt == 4:
                        raise
        except BaseException:
            self.stop()  # no server, no workdir left behind
            raise
        return self

    def stop(self) -> None:
        """SIGTERM to Dovecot's process group (SIGKILL after 5 s), reap it, wait for the group, remove workdir."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                try:
                    _killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        _killpg(proc.pid, signal.SIGKILL)
                finally:
                    proc.wait()
                deadline = time.monotonic() + 5
                while _group_alive(proc.pid):
                    if time.monotonic() > deadline:
                        _killpg(proc.pid, signal.SIGKILL)
                    time.sleep(0.01)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- test helpers ---------------------------------------------------------------------------------

    def deliver(self, subject: str, body: str, *, sender: str = "sender@example.test") -> None:
        """Put a new message (``From`` ``sender``, ``To`` the user) into the user's Maildir ``new/``."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = f"{self.user}@example.test"
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="example.test")
        msg.set_content(body)
        self._delivered += 1
        name = f"{time.time_ns()}.P{os.getpid()}Q{self._delivered}.vault-proxy-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(msg.as_bytes())
        self._own(tmp)
        tmp.rename(self.maildir / "new" / name)  # Maildir delivery: write in tmp/, then move into new/

    # -- internals ------------------------------------------------------------------------------------

    def _own(self, path: Path) -> None:
        os.chown(path, self._runas.pw_uid, self._runas.pw_gid)

    def _prepare(self) -> None:
        """A fresh workdir with certificate, passwd-file, Maildir and ``dovecot.conf``."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir()  # fails if the path exists (a random name in /tmp, like mkdtemp)
        self.workdir.chmod(0o755)
        for sub in (self.workdir / "run", self.workdir / "state", *(self.maildir / x for x in ("cur", "new", "tmp"))):
            sub.mkdir(parents=True)
        self.tls_ca.cert_pem.write_to_path(str(self.ca_path))
        cert = self.tls_ca.issue_cert(*dict.fromkeys([self.host, "127.0.0.1", "localhost"]))
        (self.workdir / "server.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(self.workdir / "server.key"))
        (self.workdir / "server.key").chmod(0o600)
        self._write_config()
        done = subprocess.run(
            [DOVEADM, "-c", str(self.config_path), "pw", "-s", "SHA512-CRYPT", "-p", self.password],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"doveadm pw failed: {(done.stderr or done.stdout).strip()}")
        (self.workdir / "users").write_text(f"{self.user}:{done.stdout.strip()}::::::\n")
        (self.workdir / "users").chmod(0o600)
        self.log_path.touch()
        for path in [self.workdir, *self.workdir.rglob("*")]:
            self._own(path)

    def _write_config(self) -> None:
        d, runas = self.workdir, self._runas.pw_name
        group = grp.getgrgid(self._runas.pw_gid).gr_name
        self.config_path.write_text(f"""\
instance_name = {d.name}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = {self.host}
log_path = /dev/stderr
default_login_user = {runas}
default_internal_user = {runas}
default_internal_group = {group}
first_valid_uid = 1
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {self.mechanisms}
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={runas} gid={group} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # mode 0: no such socket, so no growing per-IP auth delay after failed logins
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def _launch(self) -> None:
        """Start ``dovecot -F``; wait for its ready line and for the plain port to greet with ``* OK``."""
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            groups = os.getgrouplist(self._runas.pw_name, self._runas.pw_gid)
            as_user = {"user": self._runas.pw_uid, "group": self._runas.pw_gid, "extra_groups": groups}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                **as_user,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (READY_LINE in self.log_text() and _greeting(self.host, self.port).startswith(b"* OK")):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = self.log_text().strip()
                self.stop()
                if "Address already in use" in text:
                    raise PortTaken(f"port {self.port}/{self.tls_port} is taken: {text}")
                raise RuntimeError(f"dovecot did not start on port {self.port} in {START_TIMEOUT:.0f} s: {text}")
            time.sleep(0.01)
