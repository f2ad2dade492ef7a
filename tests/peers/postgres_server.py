"""A real PostgreSQL 15 on 127.0.0.1 for tests: SCRAM-SHA-256 passwords, TLS, an app role and database.

Roles (all log in with SCRAM-SHA-256, random passwords per instance):

* ``superuser`` (``postgres``, ``super_password``), used by :meth:`PostgresServer.connect` by default;
* ``user`` (``app``, ``password``), owner of the database ``db`` (``appdb``), over TCP with or without TLS;
* ``tls_only_user`` (``app_tls``, the same ``password``, may connect to ``appdb``): pg_hba.conf accepts it
  only over TLS (``hostssl``) and rejects it on a plain connection.

The server listens on 127.0.0.1 only (``port``, below the ephemeral range) and on a unix socket in its own
directory, with ``ssl = on`` and a certificate for ``127.0.0.1`` and ``localhost`` issued by ``tls_ca`` (a
``trustme.CA``; ``ca_path`` is its PEM), so ``sslmode=verify-full sslrootcert=<ca_path>`` works. Durability
is off (``fsync = off`` ...); ``log_connections = on``.

PostgreSQL refuses to run as root: as root, initdb and postgres run as the ``postgres`` system user, so
every file lives in ``workdir``, a new /tmp/vp-postgres-XXXX owned by that user (pytest's tmp dirs are 0700
below /tmp/pytest-of-root). Each ``start()`` runs initdb afresh (about 1 s) and ``stop()`` removes
``workdir``; a restart keeps the port and the passwords, not the data. ``postgres -D`` runs in
the foreground as our child and logs to stderr, which goes to ``postgres.log``; ``stop()`` sends SIGINT
(fast shutdown: open sessions are ended) and reaps it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import psycopg
from process_peer import PortTaken, ProcessPeer, free_port
from psycopg import sql

if TYPE_CHECKING:
    import trustme

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30.0
READY_LINE = "database system is ready to accept connections"


class PostgresServer(ProcessPeer):
    """``with PostgresServer(tls_ca) as pg:`` or ``start()`` / ``stop()``; see the module docstring."""

    host = "127.0.0.1"
    superuser = "postgres"
    user = "app"
    tls_only_user = "app_tls"
    db = "appdb"

    def __init__(self, tls_ca: trustme.CA) -> None:
        self.tls_ca = tls_ca
        self.port = 0
        self.super_password = secrets.token_urlsafe(18)
        self.password = secrets.token_urlsafe(18)  # for both 'app' and 'app_tls'
        self.server_version = ""  # SHOW server_version, e.g. "15.18 (Debian 15.18-0+deb12u1)"
        self._runas = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.workdir = Path("/tmp") / f"vp-postgres-{secrets.token_hex(6)}"  # made by start(), removed by stop()
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.ca_path = self.workdir / "ca.pem"  # the TLS CA as PEM
        self._proc: subprocess.Popen[bytes] | None = None
        self._conns: list[psycopg.Connection[Any]] = []

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            return self
        restart = bool(self.port)  # a restart keeps its port
        try:
            self._prepare()
            for attempt in range(5):
                if not restart:
                    self.port = free_port()
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
        """Close our connections, stop postgres (SIGINT, then SIGKILL after 10 s), reap it, remove the workdir."""
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                try:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                finally:
                    proc.wait()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- test helpers ---------------------------------------------------------------------------------

    def connect(
        self, user: str | None = None, password: str | None = None, dbname: str | None = None, sslmode: str = "disable"
    ) -> psycopg.Connection[Any]:
        """A new autocommit psycopg connection over TCP, closed by ``stop()``.

        Defaults: the superuser, its password (``password`` for the other roles), database ``db``. With an
        ``sslmode`` other than ``disable`` the CA is ``ca_path`` (so ``verify-full`` works).
        """
        user = user or self.superuser
        if password is None:
            password = self.super_password if user == self.superuser else self.password
        params: dict[str, Any] = {"sslmode": sslmode}
        if sslmode != "disable":
            params["sslrootcert"] = str(self.ca_path)
        conn = psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=dbname or self.db,
            connect_timeout=5,
            autocommit=True,
            **params,
        )
        self._conns.append(conn)
        return conn

    # -- internals ------------------------------------------------------------------------------------

    def _run_as(self) -> dict[str, Any]:
        """Popen keyword arguments that drop root to the ``postgres`` user (none when not root)."""
        if os.geteuid() != 0:
            return {}
        groups = os.getgrouplist(self._runas.pw_name, self._runas.pw_gid)
        return {"user": self._runas.pw_uid, "group": self._runas.pw_gid, "extra_groups": groups}

    def _prepare(self) -> None:
        """A fresh workdir with TLS files and an initdb'ed, configured cluster in ``data/``."""
        d = self.workdir
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(mode=0o700)  # fails if the path exists (a random name in /tmp, like mkdtemp)
        self.tls_ca.cert_pem.write_to_path(str(self.ca_path))
        cert = self.tls_ca.issue_cert("127.0.0.1", "localhost")
        (d / "server.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(d / "server.key"))
        (d / "server.key").chmod(0o600)  # postgres insists: owned by the server user, no group/other
        (d / "pwfile").write_text(self.super_password + "\n")
        self.log_path.touch()
        for path in [d, *d.iterdir()]:
            os.chown(path, self._runas.pw_uid, self._runas.pw_gid)
        args = ["-D", str(self.data_dir), "-U", self.superuser, "--auth=scram-sha-256", f"--pwfile={d}/pwfile"]
        args += ["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        done = subprocess.run(
            [str(PG_BIN / "initdb"), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=d,
            timeout=60,
            **self._run_as(),
        )
        (d / "pwfile").unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip()}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"""
# ---- vault-proxy test instance (the port is given on the command line) ----
listen_addresses = '{self.host}'
unix_socket_directories = '{d}'
ssl = on
ssl_cert_file = '{d}/server.pem'
ssl_key_file = '{d}/server.key'
ssl_ca_file = '{d}/ca.pem'
password_encryption = scram-sha-256
log_connections = on
log_line_prefix = '%m [%p] %q%u@%d '
# throwaway data: no durability
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 32MB
""")
        hba = self.data_dir / "pg_hba.conf"  # first match wins: the TLS-only role's lines go on top
        hba.write_text(
            f"hostssl all {self.tls_only_user} 127.0.0.1/32 scram-sha-256\n"
            f"host    all {self.tls_only_user} all          reject\n" + hba.read_text()
        )

    def _launch(self) -> None:
        """Start ``postgres -D data -p PORT``, wait for its ready line, then create the roles and database."""
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                **self._run_as(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            if READY_LINE in text:
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                proc, self._proc = self._proc, None
                proc.kill()
                proc.wait()
                if "Address already in use" in text:
                    raise PortTaken(f"port {self.port} is taken: {text.strip()}")
                self.stop()
                raise RuntimeError(f"postgres did not start on port {self.port} in {START_TIMEOUT:.0f} s: {text}")
            time.sleep(0.01)
        with self.connect(dbname="postgres") as conn:  # start() stops the server if this fails
            for role in (self.user, self.tls_only_user):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(self.password))
                )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.db), sql.Identifier(self.user))
            )
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(self.db), sql.Identifier(self.tls_only_user)
                )
            )
            self.server_version = str(conn.execute("SHOW server_version").fetchone()[0])
