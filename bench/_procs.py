"""Helpers for the benchmarks: start/stop helper processes, free ports, /proc memory figures, apt installs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"
PORT_RANGE = (20000, 32767)
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind((HOST, port))
            return port
    raise RuntimeError("no free port in 20000-32767")


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM it if the bench process dies
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """One child process, its log file, and the port it should listen on."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.settimeout(0.5)
                sock.connect((HOST, self.port))
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start listening on {HOST}:{self.port}:\n    {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n    ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM to this PID only; SIGKILL if it has not exited after 5 s."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Procs:
    """Every process the benchmark starts; ``stop_all`` (also on exceptions/Ctrl-C) stops them newest first."""

    def __init__(self, root: Path) -> None:
        self.root, self.procs = root, []

    def start(self, name: str, cmd: Sequence[str], port: int) -> Proc:
        proc = Proc(name, cmd, port, self.root / f"{name}.log")
        self.procs.append(proc)
        proc.wait_listening()
        return proc

    def stop_all(self) -> None:
        while self.procs:
            with contextlib.suppress(Exception):
                self.procs.pop().stop()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()


def proc_status_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... from /proc/<pid>/status, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_ticks() -> tuple[int, int]:
    """Machine-wide (steal, total) CPU ticks from /proc/stat: steal is time the VM's host gave to others."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (values[7] if len(values) > 7 else 0), sum(values[:8])


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``echo 5 > /proc/<pid>/clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def ensure_debian_binary(binary: str, package: str, install: bool) -> str | None:
    """The binary's path; if missing and we are root (and ``install``), apt-get install the package first."""
    found = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                          if os.access(p, os.X_OK)), None)  # fmt: skip
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print(f"  installing Debian package {package!r} (apt-get install -y --no-install-recommends {package}) ...",
          flush=True)  # fmt: skip
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        print(f"  apt-get install {package} failed ({result.returncode}): {result.stderr.strip()[-300:]}")
    return shutil.which(binary) or (f"/usr/sbin/{binary}" if os.access(f"/usr/sbin/{binary}", os.X_OK) else None)
