"""TCP-session containment (issue 15, findings 2, 9, 10), attacked as an agent with a proxy token would.

Real peers: redis-server (requirepass and an ACL user with ``+@all``), PostgreSQL 15 (SCRAM, the ``app``
role owns its database and may change its own password), Dovecot, an SMTP server; real clients (redis-py,
psycopg, psql, imaplib, smtplib). Every outcome that matters (a password changed or not) is checked on the
peer directly, never through the vault.
"""

from __future__ import annotations

import imaplib
import resource
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import redis
from dovecot_server import DovecotServer
from helpers import create_token, unique
from postgres_server import PostgresServer
from redis_server import RedisServer
from smtp_server import SmtpServer

REFUSED = "refused by vault-proxy"


@pytest.fixture(scope="module")
def redis_peer(tmp_path_factory) -> RedisServer:
    peer = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def pg(upstream) -> PostgresServer:
    peer = PostgresServer(upstream.ca).start()
    yield peer
    peer.stop()


def _add(env, auth: dict) -> str:
    name = unique(auth["type"])
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _open(env, proto: str, name: str, token: str | None = None, **params) -> dict:
    resp = env.server.http.post(f"/{proto}/{name}/session", params=params,
                                headers={"Authorization": f"Bearer {token or env.token()}"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    return resp.json()


def _hostport(body: dict) -> tuple[str, int]:
    host, port = body["addr"].rsplit(":", 1)
    return host, int(port)


def _secret(body: dict) -> str:
    """The session's one-time client secret (today's code has none: any password then)."""
    return body.get("client_secret") or "any-password"


def _redis_service(env, peer: RedisServer, *, acl: bool = False, **extra) -> str:
    password = peer.acl_password if acl else peer.password
    env.secrets.add(password)
    auth = {"type": "redis", "redis_host": peer.host, "redis_port": peer.port, "redis_password": password, **extra}
    if acl:
        auth["redis_username"] = peer.acl_user
    return _add(env, auth)


def _redis(env, name: str, **params) -> redis.Redis:
    body = _open(env, "redis", name, **params)
    host, port = _hostport(body)
    return redis.Redis(host=host, port=port, password=_secret(body), socket_timeout=10)


def _exchange(addr: tuple[str, int], payload: bytes, until: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``payload`` on a raw connection; read until the replies end with ``until``, EOF or the timeout."""
    seen = b""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(payload)
        while not until or not seen.endswith(until):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _port_gone(addr: tuple[str, int]) -> bool:
    """True when nothing can use the port any more: refused, or accepted and closed at once."""
    try:
        with socket.create_connection(addr, timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(1) == b""
    except OSError:
        return True


# --- finding 2: a Redis session hands out the password ---------------------------------------------------


def test_redis_refuses_commands_that_reveal_or_change_the_credential(proxy_env, redis_peer):
    client = _redis(proxy_env, _redis_service(proxy_env, redis_peer))
    for command in (("CONFIG", "GET", "requirepass"), ("config", "get", "*"), ("ACL", "LIST"),
                    ("ACL", "GETUSER", "default"), ("DEBUG", "OBJECT", "k"), ("MODULE", "LIST"),
                    ("SLAVEOF", "NO", "ONE"), ("REPLICAOF", "NO", "ONE"),
                    ("MIGRATE", "127.0.0.1", "1", "k", "0", "10")):  # fmt: skip
        with pytest.raises(redis.ResponseError, match=REFUSED):
            client.execute_command(*command)
    assert client.ping() is True  # the session stays usable
    # A script cannot reach CONFIG either: Redis itself refuses it inside EVAL (noscript).
    with pytest.raises(redis.ResponseError) as refused:
        client.eval("return redis.call('CONFIG', 'GET', 'requirepass')", 0)
    assert redis_peer.password not in str(refused.value)
    client.close()


def test_redis_refusals_keep_pipeline_order_transactions_and_inline_commands(proxy_env, redis_peer):
    body = _open(proxy_env, "redis", _redis_service(proxy_env, redis_peer))
    key = unique("k").encode()
    payload = (
        b"AUTH %s\r\n" % _secret(body).encode()
        + b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nv1\r\n" % (len(key), key)
        + b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$11\r\nrequirepass\r\n"
        + b"GET %s\r\n" % key
        + b'c"onfig" get requirepass\r\n'  # inline, quoted the way Redis unquotes it
        + b"MULTI\r\nACL LIST\r\nGET %s\r\nEXEC\r\nPING\r\n" % key
    )
    seen = _exchange(_hostport(body), payload, b"+PONG\r\n")
    assert redis_peer.password.encode() not in seen
    replies = seen.split(b"\r\n")
    assert replies[:3] == [b"+OK", b"+OK", replies[2]] and REFUSED.encode() in replies[2], seen
    assert replies[3:5] == [b"$2", b"v1"], seen
    assert REFUSED.encode() in replies[5], seen
    assert replies[6:9] == [b"+OK", b"+QUEUED", b"+QUEUED"], seen  # MULTI, then both queued in order
    assert replies[9] == b"*2" and REFUSED.encode() in replies[10] and replies[11:13] == [b"$2", b"v1"], seen
    assert replies[13] == b"+PONG", seen


def test_redis_acl_setuser_cannot_take_the_credential_over(proxy_env, redis_peer):
    client = _redis(proxy_env, _redis_service(proxy_env, redis_peer, acl=True))
    with pytest.raises(redis.ResponseError, match=REFUSED):
        client.execute_command("ACL", "SETUSER", redis_peer.acl_user, ">taken-over-password")
    client.close()
    direct = redis.Redis(host=redis_peer.host, port=redis_peer.port, username=redis_peer.acl_user,
                         password=redis_peer.acl_password, socket_timeout=5)  # fmt: skip
    assert direct.ping() is True  # the stored password still works: nothing was changed
    direct.close()


def test_redis_allowed_commands_widen_the_filter_and_replies_stay_masked(proxy_env, redis_peer):
    bad = proxy_env.server.http.post("/services", headers=proxy_env.server.admin_headers(), json={
        "name": unique("redis"), "auth": {"type": "redis", "redis_host": redis_peer.host,
                                          "redis_allowed_commands": ["CONFIG", "GET"]}})  # fmt: skip
    assert bad.status_code == 400 and "redis_allowed_commands" in bad.json()["error"]
    name = _redis_service(proxy_env, redis_peer, redis_allowed_commands=["config"])
    shown = proxy_env.server.http.get(f"/services/{name}", headers=proxy_env.server.admin_headers()).json()
    assert shown["redis_allowed_commands"] == ["CONFIG"]
    key = unique("holds-password")
    redis_peer.client().set(key, redis_peer.password)
    client = _redis(proxy_env, name)
    masked = "*" * len(redis_peer.password)
    assert client.config_get("requirepass")["requirepass"] in (masked, masked.encode())
    assert client.get(key) == masked.encode()  # the stored password never comes back, whatever holds it
    assert "maxmemory" in client.config_get("maxmemory")
    with pytest.raises(redis.ResponseError, match=REFUSED):
        client.execute_command("ACL", "LIST")
    client.close()


# --- finding 2: a local process that connects first gets the session ------------------------------------


def _audit_outcome(env, action: str) -> str:
    time.sleep(0.3)
    return [e for e in env.audit() if e.get("action") == action][-1].get("outcome", "")


def test_redis_port_needs_the_client_secret(proxy_env, redis_peer):
    body = _open(proxy_env, "redis", _redis_service(proxy_env, redis_peer))
    assert len(body["client_secret"]) == 32
    addr = _hostport(body)
    seen = _exchange(addr, b"PING\r\nAUTH not-the-secret\r\nPING\r\n", timeout=5)
    assert seen.startswith(b"-NOAUTH") and b"-WRONGPASS" in seen and b"PONG" not in seen, seen
    assert _port_gone(addr)  # one try: the port is gone for the real client too
    assert "client secret" in _audit_outcome(proxy_env, "redis.session")


def test_postgres_port_needs_the_client_secret(proxy_env, pg):
    name = _pg_service(proxy_env, pg)
    body = _open(proxy_env, "postgres", name)
    host, port = _hostport(body)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=host, port=port, user="agent", dbname=pg.db, password="guess", connect_timeout=5)
    assert "client secret" in _audit_outcome(proxy_env, "postgres.session")
    body = _open(proxy_env, "postgres", name)
    host, port = _hostport(body)
    with psycopg.connect(host=host, port=port, user="agent", dbname=pg.db, password=body["client_secret"],
                         connect_timeout=5) as conn:  # fmt: skip
        assert conn.execute("select current_user").fetchone() == (pg.user,)


@pytest.fixture
def mail_peers(upstream, tmp_path):
    smtp_peer = SmtpServer(tmp_path, upstream.ca).start()
    try:
        with DovecotServer(upstream.ca) as dovecot:
            yield dovecot, smtp_peer
    finally:
        smtp_peer.stop()


def test_imap_and_smtp_ports_need_the_client_secret(proxy_env, mail_peers):
    dovecot, smtp_peer = mail_peers
    proxy_env.secrets.add(dovecot.password, smtp_peer.password)
    imap_name = _add(proxy_env, {"type": "imap", "imap_host": dovecot.host, "imap_port": dovecot.port,
                                 "imap_user": dovecot.user, "imap_password": dovecot.password,
                                 "imap_tls": "starttls"})  # fmt: skip
    smtp_name = _add(proxy_env, {"type": "smtp", "smtp_host": smtp_peer.host, "smtp_port": smtp_peer.port,
                                 "smtp_user": smtp_peer.user, "smtp_password": smtp_peer.password})  # fmt: skip
    body = _open(proxy_env, "imap", imap_name)
    client = imaplib.IMAP4(*_hostport(body), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.login("agent", "guess")
    assert "client secret" in _audit_outcome(proxy_env, "imap.session")
    body = _open(proxy_env, "smtp", smtp_name)
    with smtplib.SMTP(*_hostport(body), timeout=10) as client, pytest.raises(smtplib.SMTPException) as failed:
        client.login("agent", "guess")  # 535, then smtplib tries AUTH LOGIN on the closed connection
    assert "535" in str(failed.value) or isinstance(failed.value, smtplib.SMTPServerDisconnected)
    assert "client secret" in _audit_outcome(proxy_env, "smtp.session")
    # Replies are masked too: a mail that holds the IMAP password comes back with it starred out.
    dovecot.deliver("holds the password", f"password: {dovecot.password}")
    body = _open(proxy_env, "imap", imap_name)
    client = imaplib.IMAP4(*_hostport(body), timeout=10)
    client.login("agent", _secret(body))
    client.select("INBOX")
    _, data = client.fetch(b"1:*", "(BODY[TEXT])")
    client.logout()
    text = b"".join(part[1] for part in data if isinstance(part, tuple))
    assert dovecot.password.encode() not in text and b"*" * len(dovecot.password) in text


# --- finding 9: Postgres sessions let an agent take the credential over --------------------------------


def _pg_service(env, peer: PostgresServer, **extra) -> str:
    env.secrets.add(peer.password)
    return _add(env, {"type": "postgres", "postgres_host": peer.host, "postgres_port": peer.port,
                      "postgres_user": peer.user, "postgres_password": peer.password, "postgres_db": peer.db,
                      "postgres_tls": "require", **extra})  # fmt: skip


def _pg_connect(env, name: str, **kwargs) -> psycopg.Connection:
    body = _open(env, "postgres", name)
    host, port = _hostport(body)
    return psycopg.connect(host=host, port=port, user="agent", dbname="appdb", password=_secret(body),
                           connect_timeout=10, **kwargs)  # fmt: skip


def _stored_password_still_works(peer: PostgresServer) -> None:
    with psycopg.connect(host=peer.host, port=peer.port, user=peer.user, password=peer.password, dbname=peer.db,
                         connect_timeout=5) as conn:  # fmt: skip
        assert conn.execute("select 1").fetchone() == (1,)


PASSWORD_STATEMENTS = [
    "ALTER ROLE app PASSWORD 'taken-over-1'",
    "alter user current_user with encrypted password 'taken-over-2'",
    '/* c */ ALTER/**/ROLE "app" -- x\n PASSWORD $$taken-over-3$$',
    "select 1; alter role app password 'taken-over-4'",
    "CREATE ROLE evil LOGIN PASSWORD 'taken-over-5'",
    "select 'a\\'; alter role app password ''taken-over-6''; --'",  # standard_conforming_strings off
]


def test_postgres_refuses_password_statements_and_stays_usable(proxy_env, pg):
    name = _pg_service(proxy_env, pg)
    with _pg_connect(proxy_env, name, autocommit=True) as conn:
        conn.execute("set standard_conforming_strings = off")
        for statement in PASSWORD_STATEMENTS:
            result = conn.pgconn.exec_(statement.encode())  # simple Query, as psql sends it
            assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501", statement
            assert REFUSED in result.error_message.decode(), statement
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
                conn.execute(statement, prepare=True)  # extended protocol: Parse, Bind, Execute
            assert conn.execute("select 2").fetchone() == (2,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):  # Parse with a parameter type
            conn.execute("alter role app password %s", ["taken-over-8"], prepare=True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED), conn.pipeline():
            first = conn.execute("select 10")  # pipelined: the refusal arrives in its place
            conn.execute("alter role app password 'taken-over-7'")
            conn.execute("select 11")
        assert first.fetchone() == (10,)
        assert conn.execute("select 12").fetchone() == (12,)
    _stored_password_still_works(pg)


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql binary missing")
def test_psql_password_command_is_refused(proxy_env, pg):
    body = _open(proxy_env, "postgres", _pg_service(proxy_env, pg))
    host, port = _hostport(body)
    done = subprocess.run(["psql", f"host={host} port={port} user=agent dbname=appdb", "-c",
                           "ALTER USER app PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$x:y'"],
                          env={"PGPASSWORD": _secret(body), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode != 0 and REFUSED in done.stderr, done.stderr
    _stored_password_still_works(pg)


def test_postgres_read_only_session(proxy_env, pg):
    name = _pg_service(proxy_env, pg, postgres_read_only=True)
    with _pg_connect(proxy_env, name, autocommit=True) as conn:
        assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create table written (x int)")
        for statement in ("set default_transaction_read_only = off", "SET SESSION CHARACTERISTICS AS TRANSACTION "
                          "READ WRITE", "begin read write", "select set_config('default_transaction_read_only', "
                          "'off', false)"):  # fmt: skip
            with pytest.raises(psycopg.Error, match=REFUSED):
                conn.execute(statement)
        conn.execute("discard all")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create table written (x int)")
        assert conn.execute("select count(*) from pg_roles").fetchone()[0] > 0


def test_postgres_replies_mask_the_stored_password(proxy_env, pg):
    name = _pg_service(proxy_env, pg)
    with _pg_connect(proxy_env, name, autocommit=True) as conn:
        row = conn.execute("select %s::text, 'after'", [pg.password]).fetchone()
    assert row == ("*" * len(pg.password), "after")  # masked in place: the DataRow framing holds


# --- finding 10: no cap on TCP sessions; fd exhaustion is a 500 and leaks the upstream login ---------------

LOOPBACK = ("--allow-private", "127.0.0.0/8")


def _raw_open(server, token: str, name: str, **params):
    return server.http.post(f"/redis/{name}/session", params=params, headers={"Authorization": f"Bearer {token}"})


def _capped_server(start_server, secrets, peer: RedisServer, *flags: str):
    server = start_server(*LOOPBACK, *flags)
    server.unlock(secrets.new("master-pw"))
    secrets.add(peer.password)
    name = unique("redis")
    auth = {"type": "redis", "redis_host": peer.host, "redis_port": peer.port, "redis_password": peer.password}
    resp = server.http.post("/services", headers=server.admin_headers(), json={"name": name, "auth": auth})
    assert resp.status_code == 201, resp.text
    return server, name, lambda: create_token(server, {"scope": "proxy"})["id"]


def test_sessions_are_capped_per_token_by_default(proxy_env, redis_peer):
    name = _redis_service(proxy_env, redis_peer)
    token, other = proxy_env.token(fresh=True), proxy_env.token(fresh=True)
    opened = [_open(proxy_env, "redis", name, token) for _ in range(8)]
    refused = _raw_open(proxy_env.server, token, name)
    assert refused.status_code == 429 and "8" in refused.json()["error"], refused.text
    assert _raw_open(proxy_env.server, other, name).status_code == 200  # another token is not affected
    seen = _exchange(_hostport(opened[0]), b"AUTH %s\r\nQUIT\r\n" % _secret(opened[0]).encode(), timeout=5)
    assert seen.startswith(b"+OK"), seen
    deadline = time.monotonic() + 5
    while (resp := _raw_open(proxy_env.server, token, name)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.1)  # a used session frees its slot once it ends
    assert resp.status_code == 200, resp.text


def test_sessions_are_capped_in_all(start_server, secrets, redis_peer):
    server, name, new_token = _capped_server(start_server, secrets, redis_peer, "--max-sessions", "3",
                                             "--max-sessions-per-token", "2")  # fmt: skip
    first, second = new_token(), new_token()
    assert [_raw_open(server, first, name).status_code for _ in range(3)] == [200, 200, 429]
    assert _raw_open(server, second, name).status_code == 200
    refused = _raw_open(server, second, name)
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("application/json")
    assert "3" in refused.json()["error"]


def _vault_connections(peer: RedisServer) -> int:
    return sum(1 for client in peer.client_list() if client.get("name") != "peer-admin")


def test_fd_exhaustion_is_a_503_and_leaks_no_upstream_login(start_server, secrets, redis_peer):
    server, name, new_token = _capped_server(start_server, secrets, redis_peer, "--max-sessions", "500",
                                             "--max-sessions-per-token", "500")  # fmt: skip
    token = new_token()
    assert _raw_open(server, token, name, timeout=1).status_code == 200  # warm: every module imported
    time.sleep(1.5)
    before = _vault_connections(redis_peer)
    pid = server.proc.pid
    in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 9, hard))
    statuses = []
    for _ in range(12):
        resp = _raw_open(server, token, name, timeout=2)
        statuses.append(resp.status_code)
        assert resp.headers["content-type"].startswith("application/json")
        if resp.status_code != 200:
            assert resp.status_code == 503 and "open files" in resp.json()["error"], resp.text
    assert 200 in statuses and 503 in statuses, statuses
    time.sleep(3)  # every unused session expired: each upstream login it held is closed
    assert _vault_connections(redis_peer) <= before
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    assert _raw_open(server, token, name).status_code == 200
