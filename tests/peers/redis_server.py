"""A real redis-server on 127.0.0.1 for tests: password-protected, RAM only, optionally also over TLS.

Everything (``redis.conf``, ``redis.log``, TLS files) lives in ``workdir``. Two ways to log in:

* the ``default`` user with ``requirepass`` (``AUTH <password>``), used by :meth:`RedisServer.client` for
  test setup and inspection;
* an ACL user with full access (``user <acl_user> on ><acl_password> ~* &* +@all``; ``AUTH <user> <password>``
  or ``HELLO 3 AUTH <user> <password>``, which is what redis-py >= 8 sends by default).

Passwords are random per instance. No persistence (``save ""``, ``appendonly no``): nothing is written on stop.
With ``tls_ca`` (a ``trustme.CA``) the server also listens with TLS on ``tls_port``, with a certificate for
``127.0.0.1`` issued by that CA (no client certificates); ``ca_path`` is that CA as a PEM file.
redis-server runs in the foreground (``daemonize no``) as our child and logs to stdout, which goes to
``redis.log``; ``stop()`` always reaps it.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import redis
from process_peer import PortTaken, ProcessPeer, free_port
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    import trustme

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 15.0
READY_LINE = "Ready to accept connections"


def _ping(host: str, port: int) -> bytes:
    """Send an unauthenticated inline PING; return the first reply line (``-NOAUTH ...`` here), or b"" on failure."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.strip()
    except OSError:
        return b""


class RedisServer(ProcessPeer):
    """``with RedisServer(workdir) as server:`` or ``start()`` / ``stop()``; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, tls_ca: trustme.CA | None = None) -> None:
        """``tls_ca``: also serve TLS on ``tls_port`` with a certificate for 127.0.0.1 from that CA."""
        self.workdir = Path(workdir).resolve()
        self.tls_ca = tls_ca
        self.port = 0
        self.tls_port: int | None = None
        self.password = secrets.token_urlsafe(24)  # requirepass of the 'default' user (32 characters)
        self.acl_user = "vault-app"
        self.acl_password = secrets.token_urlsafe(24)
        self.config_path = self.workdir / "redis.conf"
        self.log_path = self.workdir / "redis.log"
        self.ca_path: Path | None = None  # the TLS CA as PEM (only with tls_ca)
        self.cert_path = self.workdir / "server.pem"
        self.key_path = self.workdir / "server.key"
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []
        self._admin: redis.Redis | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)  # redis.conf holds the passwords
        if self.tls_ca is not None and self.ca_path is None:
            cert = self.tls_ca.issue_cert("127.0.0.1")
            self.cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
            cert.private_key_pem.write_to_path(str(self.key_path))
            self.key_path.chmod(0o600)
            self.ca_path = self.workdir / "ca.pem"
            self.tls_ca.cert_pem.write_to_path(str(self.ca_path))
        if self.port:  # a restart keeps its ports
            self._launch()
            return self
        for attempt in range(5):
            self.port = free_port()
            if self.tls_ca is not None:
                self.tls_port = free_port({self.port})
            try:
                self._launch()
                return self
            except PortTaken:
                if attempt == 4:
                    raise
        return self

    def stop(self) -> None:
        """Close the admin clients, stop redis-server (SIGTERM, then SIGKILL after 5 s); always reaps it."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        self._admin = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        finally:
            proc.wait()

    # -- test helpers ---------------------------------------------------------------------------------

    def client(self, db: int = 0) -> redis.Redis:
        """A new redis-py client logged in as the ``default`` user (admin) over plain TCP; replies are bytes.

        No retries (redis-py's default retries a failure 3 times with backoff, hiding it for seconds). Its
        connections are named ``peer-admin`` (so they are easy to tell apart in :meth:`client_list`) and
        closed by ``stop()``.
        """
        client = redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            password=self.password,
            client_name="peer-admin",
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )
        self._clients.append(client)
        return client

    def client_list(self) -> list[dict[str, Any]]:
        """``CLIENT LIST`` parsed, one dict per connection (str values: ``user``, ``name``, ``laddr``, ``db``, ...).

        Includes the admin connection this uses (``name == "peer-admin"``). ``laddr`` ends in ``:<tls_port>`` for a
        TLS connection.
        """
        if self._admin is None:
            self._admin = self.client()
        return self._admin.client_list()

    # -- internals ------------------------------------------------------------------------------------

    def _write_config(self) -> None:
        lines = [
            f"bind {self.host}",
            "protected-mode yes",
            f"port {self.port}",
            "daemonize no",
            "supervised no",
            "# log to stdout, which start() sends to redis.log (config errors end up there too)",
            'logfile ""',
            "loglevel notice",
            "always-show-logo no",
            f"dir {self.workdir}",
            "# no persistence: no RDB snapshots (not even on shutdown), no AOF",
            'save ""',
            "appendonly no",
            f"requirepass {self.password}",
            f"user {self.acl_user} on >{self.acl_password} ~* &* +@all",
        ]
        if self.tls_port is not None:
            lines += [
                f"tls-port {self.tls_port}",
                f"tls-cert-file {self.cert_path}",
                f"tls-key-file {self.key_path}",
                "tls-auth-clients no",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)

    def _launch(self) -> None:
        """Write the config, start redis-server and wait for its ready line and an answer to PING."""
        self._write_config()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [REDIS_SERVER, str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            if READY_LINE in text and _ping(self.host, self.port).startswith((b"-NOAUTH", b"+PONG")):
                return
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                if "Address already in use" in text:
                    raise PortTaken(f"port {self.port}/{self.tls_port} is taken: {text.strip()}")
                raise RuntimeError(
                    f"redis-server did not start on port {self.port} in {START_TIMEOUT:.0f} s: {text.strip()}"
                )
            time.sleep(0.01)
