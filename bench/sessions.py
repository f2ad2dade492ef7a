#!/usr/bin/env python3
"""TCP sessions: setup latency and splice throughput through vault-proxy vs direct clients, in one run on loopback.

Starts a throwaway redis-server (tests/peers/redis_server.py, plain TCP) and PostgreSQL 15
(tests/peers/postgres_server.py, TLS from a trustme CA), then vault-server (``--allow-private 127.0.0.0/8``,
``--ca-file`` that CA) with three services: redis, postgres ``postgres_tls: disable``, postgres ``require``.

1. Setup latency, targets interleaved round by round (after 2 warm-up rounds), each timed step after a 20 ms
   pause (so the previous step's teardown is over; ``GET /health`` after the same pause is the HTTP floor):
   - direct: redis-py ``Connection.connect()`` (TCP + HELLO/AUTH) then PING; ``psycopg.connect`` with the real
     password (TLS: ``verify-full``) then ``select 1``;
   - session: ``POST /{proto}/{svc}/session`` until the 200, then the same client through the address (the
     session's one-time client secret as password, ``sslmode=disable``) until its PING / ``select 1`` is answered ("POST + client ready").
2. Throughput on one connection each, direct and through a session, repetitions interleaved:
   ``COPY (SELECT repeat('x', R - 1) FROM generate_series(1, N)) TO STDOUT`` via psycopg ``cursor.copy``, and
   redis-py pipelines of GETs of one 1 MiB value; plus the vault-server's CPU (user + sys) per GB spliced.

Every loop is bounded in count and by ``--deadline``; every process started is stopped on exit.
Usage: bench/sessions.py [--rounds 30] [--copy-mb 100] [--reps 5] [--redis-gets 100] [--deadline 120]  (~12 s)
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
import trustme
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "peers"))
from postgres_server import PostgresServer  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from _procs import HOST, Procs, cpu_seconds, cpu_ticks, free_port  # noqa: E402
from proxy import vault_server_cmd  # noqa: E402

MB = 1_000_000
BLOB_KEY = "bench:blob"
SETTLE = 0.02  # pause before each timed setup, so the previous one's teardown (backend exit, audit) is over


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def over(self) -> bool:
        return time.monotonic() > self.end


class Vault:
    """vault-server on loopback, unlocked, with a proxy token for the sessions."""

    def __init__(self, procs: Procs, root: Path, ca_file: Path) -> None:
        port = free_port()
        self.proc = procs.start("vault-server", [*vault_server_cmd(), "--listen", f"{HOST}:{port}", "--data-dir",
                                                 str(root / "data"), "--allow-private", "127.0.0.0/8", "--ca-file",
                                                 str(ca_file)], port)  # fmt: skip
        self.http = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30.0, trust_env=False)
        admin = self.http.post("/auth/unlock", json={"password": os.urandom(12).hex()}).raise_for_status().json()
        self.admin = {"Authorization": f"Bearer {admin['id']}"}
        token = self.http.post("/tokens", json={"scope": "proxy"}, headers=self.admin).raise_for_status().json()
        self.auth = {"Authorization": f"Bearer {token['id']}"}

    def add(self, name: str, auth: dict[str, Any]) -> None:
        self.http.post("/services", json={"name": name, "auth": auth}, headers=self.admin).raise_for_status()

    def session(self, proto: str, name: str) -> tuple[str, int, str]:
        """(host, port, the session's one-time client secret: the local client's password)."""
        resp = self.http.post(f"/{proto}/{name}/session", params={"timeout": 30}, headers=self.auth)
        if resp.status_code != 200:
            raise RuntimeError(f"{proto} session {name}: HTTP {resp.status_code} {resp.text[:200]}")
        answer = resp.json()
        host, port = answer["addr"].rsplit(":", 1)
        return host, int(port), answer["client_secret"]


def redis_conn(host: str, port: int, password: str) -> Connection:
    return Connection(host=host, port=port, password=password, socket_timeout=30, socket_connect_timeout=10,
                      retry=Retry(NoBackoff(), 0))  # fmt: skip


def redis_client(host: str, port: int, password: str) -> redis.Redis:
    return redis.Redis(host=host, port=port, password=password, socket_timeout=60, socket_connect_timeout=10,
                       retry=Retry(NoBackoff(), 0))  # fmt: skip


def pg_conn(host: str, port: int, user: str, password: str, db: str, ca: Path | None = None) -> psycopg.Connection:
    tls = {"sslmode": "verify-full", "sslrootcert": str(ca)} if ca else {"sslmode": "disable"}
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=db, connect_timeout=10,
                           autocommit=True, **tls)  # fmt: skip


def timed_redis(host: str, port: int, password: str) -> tuple[float, float]:
    """Seconds until logged in (TCP + HELLO/AUTH + CLIENT SETINFO), and until the first PING is answered.

    The Connection object is built before the clock starts: its constructor looks up redis-py's version with
    importlib.metadata, ~0.8 ms of client CPU that has nothing to do with the path measured.
    """
    conn = redis_conn(host, port, password)
    started = time.perf_counter()
    conn.connect()
    login = time.perf_counter()
    conn.send_command("PING")
    if conn.read_response() not in (b"PONG", "PONG"):
        raise RuntimeError("redis: no PONG")
    ready = time.perf_counter()
    conn.disconnect()
    return login - started, ready - started


def timed_pg(host: str, port: int, user: str, password: str, db: str, ca: Path | None = None) -> tuple[float, float]:
    """Seconds until psycopg.connect returns, and until the first ``select 1`` is answered."""
    started = time.perf_counter()
    conn = pg_conn(host, port, user, password, db, ca)
    login = time.perf_counter()
    if conn.execute("select 1").fetchone() != (1,):
        raise RuntimeError("postgres: select 1 failed")
    ready = time.perf_counter()
    conn.close()
    return login - started, ready - started


def measure_setup(vault: Vault, targets: list[tuple[str, str, str, Callable, Callable]], rounds: int,
                  deadline: Deadline) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Per target: direct login / direct ready / POST→200 / POST + client ready, in seconds; and under
    "health", ``GET /health`` after the same pause: the bare HTTP round trip to vault-server."""
    out = {label: {"login": [], "ready": [], "post": [], "post_ready": []} for label, *_ in targets}
    out["health"] = {"post": []}
    for i in range(rounds + 2):
        if deadline.over():
            print(f"  deadline: setup stopped after {max(0, i - 2)} rounds", flush=True)
            break
        time.sleep(SETTLE)
        started = time.perf_counter()
        vault.http.get("/health").raise_for_status()
        if i >= 2:
            out["health"]["post"].append(time.perf_counter() - started)
        for label, proto, service, direct, via in targets:
            time.sleep(SETTLE)
            login, ready = direct()
            time.sleep(SETTLE)
            started = time.perf_counter()
            host, port, secret = vault.session(proto, service)
            post = time.perf_counter() - started
            _, client_ready = via(host, port, secret)
            if i >= 2:  # the first two rounds warm up both paths
                for key, value in (("login", login), ("ready", ready), ("post", post),
                                   ("post_ready", post + client_ready)):  # fmt: skip
                    out[label][key].append(value)
    return out


def pg_copy(conn: psycopg.Connection, rows: int, row_bytes: int) -> tuple[float, int]:
    query = f"COPY (SELECT repeat('x', {row_bytes - 1}) FROM generate_series(1, {rows})) TO STDOUT"
    started, total = time.perf_counter(), 0
    with conn.cursor() as cur, cur.copy(query) as copy:
        for data in copy:
            total += len(data)
    return time.perf_counter() - started, total


def redis_gets(client: redis.Redis, gets: int, batch: int = 10) -> tuple[float, int]:
    started, total = time.perf_counter(), 0
    for first in range(0, gets, batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(batch, gets - first)):
            pipe.get(BLOB_KEY)
        total += sum(len(value) for value in pipe.execute())
    return time.perf_counter() - started, total


def measure_stream(run: Callable[[Any], tuple[float, int]], direct: Any, via: Any, reps: int, pid: int,
                   deadline: Deadline) -> dict[str, Any]:  # fmt: skip
    """MB/s direct and through the session (interleaved reps), and the server's CPU seconds per GB spliced."""
    speeds: dict[str, list[float]] = {"direct": [], "session": []}
    cpu, moved = 0.0, 0
    for _ in range(reps):
        if deadline.over():
            print("  deadline: throughput reps cut short", flush=True)
            break
        seconds, size = run(direct)
        speeds["direct"].append(size / MB / seconds)
        before = sum(cpu_seconds(pid))
        seconds, size = run(via)
        cpu += sum(cpu_seconds(pid)) - before
        moved += size
        speeds["session"].append(size / MB / seconds)
    return {**speeds, "cpu_per_gb": cpu / (moved / 1e9) if moved else float("nan")}


def fmt(values: list[float]) -> str:
    """'median / p90' in ms."""
    if not values:
        return "—"
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return f"{statistics.median(values) * 1000:.2f} / {p90 * 1000:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="setup rounds per target (default 30)")
    parser.add_argument("--copy-mb", type=int, default=100, help="MB per Postgres COPY (default 100)")
    parser.add_argument("--row-bytes", type=int, default=1000, help="bytes per COPY row (default 1000)")
    parser.add_argument("--redis-gets", type=int, default=100, help="GETs of the 1 MiB value per run (default 100)")
    parser.add_argument("--reps", type=int, default=5, help="throughput repetitions (default 5)")
    parser.add_argument("--deadline", type=float, default=120.0, help="overall time limit in seconds (default 120)")
    args = parser.parse_args()
    deadline = Deadline(args.deadline)
    started, ticks, load = time.monotonic(), cpu_ticks(), os.getloadavg()[0]
    rows = args.copy_mb * MB // args.row_bytes
    with tempfile.TemporaryDirectory(prefix="sessions-bench-", dir="/tmp") as tmp, Procs(Path(tmp)) as procs:
        root, ca = Path(tmp), trustme.CA()
        ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        rds = RedisServer(root / "redis").start()
        pg = PostgresServer(ca)
        try:
            pg.start()
            vault = Vault(procs, root, ca_file)
            vault.add("rds", {"type": "redis", "redis_host": rds.host, "redis_port": rds.port,
                              "redis_password": rds.password, "redis_tls": False})  # fmt: skip
            pg_auth = {"type": "postgres", "postgres_host": pg.host, "postgres_port": pg.port,
                       "postgres_user": pg.user, "postgres_password": pg.password, "postgres_db": pg.db}  # fmt: skip
            vault.add("pg-plain", {**pg_auth, "postgres_tls": "disable"})
            vault.add("pg-tls", {**pg_auth, "postgres_tls": "require"})
            direct_pg = (pg.host, pg.port, pg.user, pg.password, pg.db)
            targets = [
                ("Redis (plain)", "redis", "rds", lambda: timed_redis(rds.host, rds.port, rds.password),
                 lambda h, p, s: timed_redis(h, p, s)),
                ("Postgres, sslmode disable", "postgres", "pg-plain", lambda: timed_pg(*direct_pg),
                 lambda h, p, s: timed_pg(h, p, "agent", s, "any")),
                ("Postgres, TLS (require / verify-full)", "postgres", "pg-tls",
                 lambda: timed_pg(*direct_pg, ca=ca_file), lambda h, p, s: timed_pg(h, p, "agent", s, "any")),
            ]  # fmt: skip
            print(f"setup latency: {args.rounds} rounds per target ...", flush=True)
            setup = measure_setup(vault, targets, args.rounds, deadline)

            print(
                f"throughput: {args.reps} reps, COPY {args.copy_mb} MB, {args.redis_gets} x GET 1 MiB ...", flush=True
            )
            streams = {}
            pid = vault.proc.pid
            copy = functools.partial(pg_copy, rows=rows, row_bytes=args.row_bytes)
            for label, service, ca_path in (("Postgres COPY TO STDOUT, plain", "pg-plain", None),
                                            ("Postgres COPY TO STDOUT, TLS", "pg-tls", ca_file)):  # fmt: skip
                direct = pg_conn(*direct_pg, ca=ca_path)
                host, port, secret = vault.session("postgres", service)
                via = pg_conn(host, port, "agent", secret, "any")
                for conn in (direct, via):
                    conn.execute("SET statement_timeout = '60s'")  # bounds each COPY
                    pg_copy(conn, 1000, args.row_bytes)  # warm-up
                streams[label] = measure_stream(copy, direct, via, args.reps, pid, deadline)
                direct.close()
                via.close()
            rds.client().set(BLOB_KEY, os.urandom(1 << 20))
            direct = redis_client(rds.host, rds.port, rds.password)
            host, port, secret = vault.session("redis", "rds")
            via = redis_client(host, port, secret)
            for client in (direct, via):
                redis_gets(client, 2)  # warm-up
            gets = functools.partial(redis_gets, gets=args.redis_gets)
            streams["Redis pipelined GET of 1 MiB, plain"] = measure_stream(gets, direct, via, args.reps, pid,
                                                                             deadline)  # fmt: skip
            direct.close()
            via.close()
        finally:
            pg.stop()
            rds.stop()
    steal, total = (now - before for now, before in zip(cpu_ticks(), ticks, strict=True))
    load = max(load, os.getloadavg()[0])
    commit = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"], capture_output=True,
                            text=True, check=False).stdout.strip() or "?"  # fmt: skip
    print(f"\ncode at git {commit}; {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, load "
          f"{load:.2f}, psycopg {psycopg.__version__}, redis-py {redis.__version__}, "
          f"PostgreSQL {pg.server_version}; {time.monotonic() - started:.0f} s in all, steal {steal / max(total, 1):.1%}")  # fmt: skip
    if load > 1.5 or steal > 0.02 * total:
        print("WARNING: the machine was busy (load average > 1.5 or steal > 2 %); the numbers are not comparable")
    print()
    print("Setup latency, ms (median / p90)\n")
    print("| upstream | direct login | direct login + first command | POST → 200 | POST + client ready | "
          "added to ready (median) |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    health = setup.pop("health")["post"]
    for label, row in setup.items():
        added = (statistics.median(row["post_ready"]) - statistics.median(row["ready"])) * 1000 if row["ready"] else 0
        print(f"| {label} | {fmt(row['login'])} | {fmt(row['ready'])} | {fmt(row['post'])} | "
              f"{fmt(row['post_ready'])} | {added:+.2f} |")  # fmt: skip
    print(f"| `GET /health` after the same pause (the bare HTTP round trip) | | | {fmt(health)} | | |")
    print("\nThroughput, MB/s (best / median; 1 MB = 10^6 bytes)\n")
    print("| stream | direct | through a session | session / direct (median) | vault-server CPU s per GB |\n"
          "|---|---:|---:|---:|---:|")  # fmt: skip
    for label, res in streams.items():
        if not res["session"]:
            continue
        d, s = res["direct"], res["session"]
        print(f"| {label} | {max(d):.0f} / {statistics.median(d):.0f} | {max(s):.0f} / {statistics.median(s):.0f} | "
              f"{statistics.median(s) / statistics.median(d):.0%} | {res['cpu_per_gb']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
