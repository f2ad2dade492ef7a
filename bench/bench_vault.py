#!/usr/bin/env python3
"""Benchmark the vault over HTTP: unlock time, POST /services latency vs vault size, vault.enc size.

Runs the real server (``python -m vault_proxy.server``) on 127.0.0.1 (free port in 20000-32767, data dir
under /tmp) through its public HTTP API only. Baselines from the same run: bare Argon2id (unlock); GET
/health and GET /services/{name}, no save (HTTP round trip); a same-size save done here in Python (AES-GCM,
write, fsync, .bak link, rename, dir fsync). Loops are bounded in count and time (``--stage-budget``);
the password and credentials are random and never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cryptography
import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import HOST, free_port  # noqa: E402

FILE_SIZE = 4 * 1024 * 1024  # below the server's 5 MiB per-file cap
CHUNK = 1024 * 1024  # the server's encryption chunk
ARGON_T, ARGON_M_KIB, ARGON_P = 3, 64 * 1024, 4  # the product's Argon2id parameters
NAN = float("nan")


def pct(samples: list[float], q: float) -> float:  # nearest rank
    return sorted(samples)[max(0, math.ceil(q / 100 * len(samples)) - 1)] if samples else NAN


def med(samples: list[float]) -> float:
    return statistics.median(samples) if samples else NAN


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{2 if seconds < 0.1 else 0}f}"


def size_str(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


class Budget:
    """A stage's time limit: loops call ``left()`` and stop once it is spent."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.deadline, self.spent = name, time.monotonic() + seconds, False

    def left(self) -> bool:
        if not self.spent and time.monotonic() > self.deadline:
            print(f"  ! stage {self.name!r}: time budget spent, moving on", flush=True)
            self.spent = True
        return not self.spent

    def range(self, *bounds: int) -> Iterator[int]:  # range(), cut short once the budget is spent
        return itertools.takewhile(lambda _: self.left(), range(*bounds))


def sample(n: int, budget: Budget, fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in budget.range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} (expected {status}) {resp.text[:200]}")
    return resp


class Server:
    """One ``vault_proxy.server`` subprocess; SIGTERM (then kill) to its own PID on stop."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root, self.data_dir = root, data_dir
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client()  # replaced by a client bound to the port on start()

    def start(self) -> float:
        """Start and wait until /health answers; returns the seconds that took."""
        port = free_port()
        log = self.root / f"server-{self.data_dir.name}-{port}.log"
        cmd = [sys.executable, "-m", "vault_proxy.server", "--listen", f"{HOST}:{port}",
               "--data-dir", str(self.data_dir), "--audit-log", str(self.data_dir / "audit.jsonl")]  # fmt: skip
        t0 = time.perf_counter()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60.0, trust_env=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/health").status_code == 200:
                    return time.perf_counter() - t0
            time.sleep(0.02)
        self.stop()
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"server did not start; last log lines:\n    {tail}")

    def stop(self) -> None:
        self.http.close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM to this PID only; kill it if it does not exit in 10 s
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def unlock(self, password: str) -> tuple[dict, float]:
        t0 = time.perf_counter()
        resp = expect(self.http.post("/auth/unlock", json={"password": password}), 200, "unlock")
        return {"Authorization": f"Bearer {resp.json()['id']}"}, time.perf_counter() - t0


def service_body(name: str) -> dict:
    return {"name": name, "base_url": "https://api.example.com",
            "auth": {"type": "bearer", "token": secrets.token_hex(24)}}  # fmt: skip


def same_size_save(nbytes: int, root: Path, reps: int, budget: Budget) -> dict[str, list[float]]:
    """What a save of ``nbytes`` costs without the server, in plain Python: AES-GCM alone; write, fsync and
    replace (.bak hard link, rename, directory fsync) of unencrypted bytes; and both together, streamed."""
    plain, key, work = memoryview(os.urandom(nbytes)), os.urandom(32), Path(tempfile.mkdtemp(dir=root))
    path, tmp, staging = work / "vault.enc", work / "vault.enc.tmp", work / "vault.enc.bak.tmp"

    def chunks(encrypt: bool) -> Iterator[bytes | memoryview]:
        enc = Cipher(algorithms.AES(key), modes.GCM(os.urandom(12))).encryptor() if encrypt else None
        for i in range(0, nbytes, CHUNK):
            yield enc.update(plain[i : i + CHUNK]) if enc else plain[i : i + CHUNK]
        if enc:
            yield enc.finalize() + enc.tag

    def save(encrypt: bool) -> tuple[float, float, float]:  # like persistence.atomic_write
        t0 = time.perf_counter()
        with open(tmp, "wb") as f:  # big writes go straight to the fd; short writes are retried
            f.writelines(chunks(encrypt))
            f.flush()
            t1 = time.perf_counter()
            os.fsync(f.fileno())
        t2 = time.perf_counter()
        if path.exists():  # keep the previous file as .bak, by hard link
            staging.unlink(missing_ok=True)
            os.link(path, staging)
            os.replace(staging, work / "vault.enc.bak")
        os.replace(tmp, path)
        dfd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    out: dict[str, list[float]] = {k: [] for k in ("aes", "write", "fsync", "replace", "io", "full")}
    for _ in budget.range(reps):
        t0 = time.perf_counter()
        for _chunk in chunks(True):
            pass
        out["aes"].append(time.perf_counter() - t0)
        io = save(False)
        for k, v in zip(("write", "fsync", "replace", "io"), (*io, sum(io)), strict=True):
            out[k].append(v)
        out["full"].append(sum(save(True)))
    shutil.rmtree(work, ignore_errors=True)
    return out


def stage_unlock(root: Path, password: str, runs: int, budget: Budget, results: dict) -> None:
    argon2 = sample(runs, budget, lambda: Argon2id(salt=os.urandom(16), length=32, iterations=ARGON_T, lanes=ARGON_P,
                                                 memory_cost=ARGON_M_KIB).derive(secrets.token_bytes(16)))  # fmt: skip
    u = results["unlock"] = {"create": [], "reopen": [], "startup": [], "argon2": argon2}
    for i in budget.range(runs):
        server = Server(root, root / f"unlock-{i}")
        try:
            u["startup"].append(server.start())
            u["create"].append(server.unlock(password)[1])
            server.stop()
            u["startup"].append(server.start())
            u["reopen"].append(server.unlock(password)[1])
        finally:
            server.stop()


def measure_size(server: Server, auth: dict, label: str, args: argparse.Namespace, results: dict) -> None:
    """p50/p95 of one POST /services upsert at the current vault size, plus the no-save and same-size baselines."""
    budget, http = Budget(label, args.stage_budget), server.http
    expect(http.post("/services", json=service_body("bench-probe"), headers=auth), 201, "warm-up")
    upsert = sample(args.samples, budget, lambda: expect(
        http.post("/services", json=service_body("bench-probe"), headers=auth), 201, "upsert"))  # fmt: skip
    read = sample(args.samples, budget, lambda: expect(http.get("/services/bench-probe", headers=auth), 200, "read"))
    health = sample(args.samples, budget, lambda: expect(http.get("/health"), 200, "health"))
    vault_bytes = (server.data_dir / "vault.enc").stat().st_size
    base = same_size_save(vault_bytes, server.root, min(args.samples, 20), budget)
    results["sizes"].append({"label": label, "upsert": upsert, "read": read, "health": health, "baseline": base,
                             "vault_bytes": vault_bytes, "partial": len(upsert) < args.samples})  # fmt: skip
    print(f"  {label}: upsert p50 {ms(med(upsert))} ms, p95 {ms(pct(upsert, 95))} ms, n={len(upsert)}", flush=True)


def stage_sizes(root: Path, password: str, args: argparse.Namespace, results: dict) -> None:
    server = Server(root, root / "main")
    results["sizes"], results["fill"], results["uploads"] = [], {}, []
    try:
        server.start()
        auth, _ = server.unlock(password)
        measure_size(server, auth, "0 services", args, results)
        for target in (100, 1000):
            budget, t0 = Budget(f"fill {target}", args.stage_budget), time.perf_counter()
            have = len(server.http.get("/services", headers=auth).json()) - 1  # minus the probe
            for i in budget.range(have, target):
                expect(server.http.post("/services", json=service_body(f"svc-{i:05d}"), headers=auth), 201, "fill")
            results["fill"][target] = time.perf_counter() - t0
            measure_size(server, auth, f"{target:,} services", args, results)
        budget = Budget("files", args.stage_budget)
        for i in budget.range(args.files):
            name, data = f"blob-{i}.bin", os.urandom(FILE_SIZE)
            t0 = time.perf_counter()
            expect(server.http.post("/files", headers=auth, data={"name": name}, files={"file": (name, data)}), 201,
                   "file upload")  # fmt: skip
            results["uploads"].append(time.perf_counter() - t0)
        measure_size(server, auth, f"1,000 services + {args.files * FILE_SIZE >> 20} MiB files", args, results)
        server.stop()
        budget = Budget("re-unlock big vault", args.stage_budget)  # Argon2 + decrypt + parse it all
        for _ in budget.range(args.unlock_runs):
            server.start()
            results["unlock"].setdefault("reopen_big", []).append(server.unlock(password)[1])
            server.stop()
    finally:
        server.stop()


def report(results: dict) -> None:
    u = results["unlock"]
    print("\n== Unlock (client wall time of POST /auth/unlock; Argon2id t=3, m=64 MiB, p=4)")
    rows = [[label, str(len(s)), ms(med(s)), ms(min(s, default=NAN)), ms(max(s, default=NAN))]
            for label, s in [("bare cryptography Argon2id, in-process (baseline)", u["argon2"]),
                             ("first unlock (creates vault.enc)", u["create"]),
                             ("re-unlock after restart (empty vault)", u["reopen"]),
                             ("re-unlock after restart (1,000 svc + files)", u.get("reopen_big", [])),
                             ("server start -> /health answers", u["startup"])]]  # fmt: skip
    print(table(["", "runs", "median ms", "min ms", "max ms"], rows))
    print("\n== POST /services upsert (one HTTP round trip, keep-alive) vs vault size; ms")
    rows = [[s["label"] + (" (partial)" if s["partial"] else ""), str(len(s["upsert"])), ms(med(s["upsert"])),
             ms(pct(s["upsert"], 95)), ms(max(s["upsert"], default=NAN)), ms(med(s["read"])),
             ms(med(s["health"])), ms(med(s["baseline"]["full"])), size_str(s["vault_bytes"])]
            for s in results["sizes"]]  # fmt: skip
    print(table(["vault holds", "n", "upsert p50", "p95", "max", "GET svc p50", "GET /health p50",
                 "same-size save p50", "vault.enc"], rows))  # fmt: skip
    print("  the probe service is upserted in place, so the vault holds N + 1 services while timing")
    print("  fill: " + ", ".join(f"to {k:,} services {v:.1f} s" for k, v in results["fill"].items()))
    if results["uploads"]:
        print(f"  POST /files of {size_str(FILE_SIZE)} each: " + ", ".join(ms(x) for x in results["uploads"]) + " ms")
    print("\n== Same-size save from Python in this process (baseline; median ms). AES-GCM in 1 MiB chunks alone;")
    print("   write + fsync + replace of the bytes unencrypted; streamed save = both interleaved, as the server does")
    cols = ["aes", "write", "fsync", "replace", "io", "full"]
    rows = [[size_str(s["vault_bytes"]), str(len(s["baseline"]["full"])),
             *[ms(med(s["baseline"][c])) for c in cols]] for s in results["sizes"]]  # fmt: skip
    print(table(["bytes", "n", "AES-GCM alone", "write", "fsync", "link+rename+dir fsync", "= no-crypto save",
                 "streamed save"], rows))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter run: 1 unlock run, 20 samples, 2 files")
    parser.add_argument("--samples", type=int, help="upserts timed per vault size (default 100, quick 20)")
    parser.add_argument("--unlock-runs", type=int, help="runs per unlock measurement (default 3, quick 1)")
    parser.add_argument("--files", type=int, help=f"files of {FILE_SIZE >> 20} MiB to store (default 5, quick 2)")
    parser.add_argument("--stage-budget", type=float, default=120.0, help="seconds before a stage gives up")
    parser.add_argument("--json", type=Path, help="also write raw results (seconds) to this file")
    args = parser.parse_args()
    args.samples = max(1, args.samples or (20 if args.quick else 100))
    args.unlock_runs = max(1, args.unlock_runs or (1 if args.quick else 3))
    args.files = max(0, args.files if args.files is not None else (2 if args.quick else 5))

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs; "
          f"cryptography {cryptography.__version__}, httpx {httpx.__version__}")  # fmt: skip
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load}; samples {args.samples}, "
          f"unlock runs {args.unlock_runs}, files {args.files} x {FILE_SIZE >> 20} MiB", flush=True)  # fmt: skip

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too
    root = Path(tempfile.mkdtemp(prefix="vault-bench-", dir="/tmp"))
    password = secrets.token_urlsafe(18)
    results: dict = {}
    t_start = time.monotonic()
    try:
        print("stage 1: unlock", flush=True)
        stage_unlock(root, password, args.unlock_runs, Budget("unlock", args.stage_budget), results)
        print("stage 2: POST /services vs vault size", flush=True)
        stage_sizes(root, password, args, results)
        report(results)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\ntotal {time.monotonic() - t_start:.0f} s; load average at end: {load}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
