"""Postgres sessions against a real PostgreSQL 15 (SCRAM-SHA-256, TLS) with psycopg and the psql binary."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time

import psycopg
import pytest
from helpers import unique
from postgres_server import PostgresServer

from vault_proxy import AsyncVaultClient, VaultClient, VaultError


@pytest.fixture(scope="module")
def pg(upstream) -> PostgresServer:
    peer = PostgresServer(upstream.ca).start()
    yield peer
    peer.stop()


def _service(env, peer: PostgresServer, mode: str, *, user: str | None = None, password: str | None = None,
             port: int | None = None) -> str:  # fmt: skip
    password = password or peer.password
    env.secrets.add(password)
    auth = {"type": "postgres", "postgres_host": peer.host, "postgres_port": port or peer.port,
            "postgres_user": user or peer.user, "postgres_password": password, "postgres_db": peer.db,
            "postgres_tls": mode}  # fmt: skip
    name = unique("pg")
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _session(env, name: str, **params):
    return env.server.http.post(f"/postgres/{name}/session", params=params,
                                headers={"Authorization": f"Bearer {env.token()}"})  # fmt: skip


def _addr(env, name: str) -> dict:
    """A new session's connection arguments: host, port and its client secret as the password."""
    resp = _session(env, name)
    assert resp.status_code == 200, resp.text
    host, port = resp.json()["addr"].rsplit(":", 1)
    return {"host": host, "port": int(port), "password": resp.json()["client_secret"]}


def _backend_uses_tls(peer: PostgresServer, application_name: str) -> bool:
    with peer.connect() as admin:
        row = admin.execute(
            "select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid) where a.application_name = %s",
            (application_name,),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("mode", ["require", "disable"])
def test_psycopg_runs_as_the_stored_user_with_the_client_secret(proxy_env, pg, mode):
    args = _addr(proxy_env, _service(proxy_env, pg, mode))
    app = unique("app")
    with psycopg.connect(**args, user="someone", dbname="whatever", application_name=app,
                         connect_timeout=10) as conn:  # fmt: skip
        assert conn.execute("select current_user, current_database()").fetchone() == (pg.user, pg.db)
        assert conn.info.parameter_status("server_version") == pg.server_version
        assert conn.info.backend_pid > 0
        assert conn.execute("show application_name").fetchone() == (app,)
        assert _backend_uses_tls(pg, app) is (mode == "require")
    time.sleep(0.3)
    line = [e for e in proxy_env.audit() if e.get("action") == "postgres.session"][-1]
    assert line["bytes_to_upstream"] > 0 and line["bytes_to_client"] > 0 and line["outcome"] == "closed"


def test_tls_only_role_works_through_require_and_is_refused_with_disable(proxy_env, pg):
    args = _addr(proxy_env, _service(proxy_env, pg, "require", user=pg.tls_only_user))
    with psycopg.connect(**args, user="x", dbname="y", connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == (pg.tls_only_user,)
    resp = _session(proxy_env, _service(proxy_env, pg, "disable", user=pg.tls_only_user))
    assert resp.status_code == 502
    assert resp.json()["error"].startswith("postgres auth failed: pg_hba.conf rejects connection")


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql not installed")
def test_psql_binary(proxy_env, pg):
    args = _addr(proxy_env, _service(proxy_env, pg, "require"))
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-w", f"host={args['host']} port={args['port']} user=agent dbname=agentdb",
         "-c", "select current_user, current_database(), current_setting('application_name')"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": args["password"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{pg.user}|{pg.db}|psql"


def test_startup_options_are_applied_and_a_bad_one_fails_like_a_direct_connection(proxy_env, pg):
    name = _service(proxy_env, pg, "disable")
    args = _addr(proxy_env, name)
    options = "-c search_path=custom,public -c statement_timeout=4321"
    show = "select current_setting('search_path'), current_setting('statement_timeout')"
    with psycopg.connect(**args, user="x", dbname="y", options=options, connect_timeout=10) as conn:
        through_vault = conn.execute(show).fetchone()
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.db,
                         options=options, sslmode="disable", connect_timeout=10) as direct:  # fmt: skip
        assert through_vault == direct.execute(show).fetchone()
    assert through_vault[1] == "4321ms"
    args = _addr(proxy_env, name)
    with pytest.raises(psycopg.OperationalError, match="unrecognized configuration parameter"):
        psycopg.connect(**args, user="x", dbname="y", options="-c no_such_setting=1", connect_timeout=10)


def test_pipelined_query_right_after_startup_is_not_lost(proxy_env, pg):
    args = _addr(proxy_env, _service(proxy_env, pg, "disable"))
    startup = struct.pack("!I", 196608) + b"user\0x\0database\0y\0\0"
    password = args["password"].encode() + b"\0"
    query = b"select 'pipelined-' || current_user\0"
    with socket.create_connection((args["host"], args["port"]), timeout=10) as sock:
        sock.sendall(struct.pack("!I", len(startup) + 4) + startup + b"p" + struct.pack("!I", len(password) + 4)
                     + password + b"Q" + struct.pack("!I", len(query) + 4) + query)  # fmt: skip
        seen = b""
        while b"pipelined-" + pg.user.encode() not in seen or not seen.endswith(b"Z\0\0\0\x05I"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early after {seen!r}"
            seen += chunk
        # AuthenticationCleartextPassword (answered by the pipelined password), then AuthenticationOk
        assert seen.startswith(b"R\0\0\0\x08\0\0\0\x03R\0\0\0\x08\0\0\0\0")


def test_wrong_password_refused_tls_and_unreachable_name_the_step(proxy_env, pg):
    wrong = proxy_env.secrets.new("pg-wrong")
    resp = _session(proxy_env, _service(proxy_env, pg, "disable", password=wrong))
    assert resp.status_code == 502
    assert resp.json()["error"].startswith("postgres auth failed: password authentication failed")
    assert wrong not in resp.text
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    resp = _session(proxy_env, _service(proxy_env, pg, "require", port=closed_port))
    assert resp.status_code == 502 and resp.json()["error"].startswith("postgres connect failed")


def test_one_client_only_and_lock_ends_the_session(proxy_env, pg):
    args = _addr(proxy_env, _service(proxy_env, pg, "disable"))
    conn = psycopg.connect(**args, user="x", dbname="y", connect_timeout=10)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**args, user="x", dbname="y", connect_timeout=3)
    assert conn.execute("select 1").fetchone() == (1,)
    proxy_env.relock()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()


def test_cli_prints_the_address(proxy_env, pg):
    name = _service(proxy_env, pg, "require")
    done = proxy_env.server.cli("postgres", name, "--timeout", "10", env={"VAULT_TOKEN": proxy_env.token()})
    assert done.returncode == 0, done.stderr
    addr, secret = done.stdout.splitlines()
    host, port = addr.rsplit(":", 1)
    with psycopg.connect(host=host, port=int(port), password=secret, user="x", dbname="y", connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == (pg.user,)
    done = proxy_env.server.cli("postgres", name, "--env", env={"VAULT_TOKEN": proxy_env.token()})
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    with psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), password=env["PGPASSWORD"], user="x",
                         dbname="y", connect_timeout=10) as conn:  # fmt: skip
        assert conn.execute("select 1").fetchone() == (1,)


async def test_sdk_sessions_sync_and_async(proxy_env, pg):
    name = _service(proxy_env, pg, "require")
    with VaultClient(proxy_env.server.addr, token=proxy_env.token()) as client:
        opened = client.session("postgres", name, timeout=20)
        with pytest.raises(VaultError) as wrong_kind:
            client.session("redis", name)
        assert wrong_kind.value.status_code == 400 and "not redis" in str(wrong_kind.value)
    async with AsyncVaultClient(proxy_env.server.addr, token=proxy_env.token()) as client:
        opened_async = await client.session("postgres", name)
    assert "client_secret='...'" in repr(opened) and opened.client_secret not in repr(opened)
    for session in (opened, opened_async):
        async with await psycopg.AsyncConnection.connect(host=session.host, port=session.port, user="x", dbname="y",
                                                         password=session.client_secret) as conn:  # fmt: skip
            cursor = await conn.execute("select current_user")
            assert await cursor.fetchone() == (pg.user,)
