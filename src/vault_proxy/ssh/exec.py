"""One remote command: bounded output, a hard timeout that kills it, the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncssh

OUTPUT_CAP = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
TIMEOUT_EXIT_CODE = 124  # what coreutils timeout(1) uses
_READ = 64 * 1024
_PID_MARK = "vault-proxy-pid:"


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_ms: int
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def as_json(self) -> dict[str, object]:
        return {"stdout": self.stdout.decode("utf-8", "replace"), "stderr": self.stderr.decode("utf-8", "replace"),
                "exit_code": self.exit_code, "duration_ms": self.duration_ms, "timed_out": self.timed_out,
                "stdout_truncated": self.stdout_truncated, "stderr_truncated": self.stderr_truncated}  # fmt: skip


class _Capped:
    """Keeps the first ``cap`` bytes of a stream and drains the rest (so the remote side never blocks)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    async def drain(self, stream: asyncssh.SSHReader) -> None:
        while chunk := await stream.read(_READ):
            self.add(chunk)

    def add(self, chunk: bytes) -> None:
        room = self.cap - self.size
        if room > 0:
            self.parts.append(chunk[:room])
            self.size += min(room, len(chunk))
        if len(chunk) > room:
            self.truncated = True

    def value(self) -> bytes:
        return b"".join(self.parts)


def wrapped(command: str) -> str:
    """The command as sent: first print the session's PID on stderr, then exec the user's shell on it.

    sshd makes each exec session its own process group (setsid), so that PID is also the group to
    kill at the timeout. The SSH "signal" request alone is not enough: sshd refuses it in some setups
    (e.g. a root login: "session signalling requires privilege separation").
    """
    quoted = "'" + command.replace("'", "'\\''") + "'"
    return f'printf "{_PID_MARK}%s\\n" "$$" >&2; exec "${{SHELL:-/bin/sh}}" -c {quoted}'


async def _read_pid(stream: asyncssh.SSHReader, err: _Capped) -> int | None:
    """The PID line the wrapper prints first; anything else (a login banner) stays in stderr."""
    line = await stream.readline()
    value = line[len(_PID_MARK) :].strip() if line.startswith(_PID_MARK.encode()) else b""
    if value.isdigit():
        return int(value)
    err.add(line)
    return None


async def _kill(conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess, pid: int | None) -> None:
    with contextlib.suppress(Exception):
        process.send_signal("KILL")  # honoured where sshd allows session signals
    if pid is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.run(f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid}", check=False), 5)
    process.close()


async def run_command(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float, cap: int = OUTPUT_CAP
) -> ExecResult:
    """Run ``command``; past ``timeout`` its whole process group is killed and its channel closed."""
    started = time.monotonic()
    process = await conn.create_process(wrapped(command), encoding=None, stdin=asyncssh.DEVNULL)
    out, err = _Capped(cap), _Capped(cap)
    pid: list[int | None] = [None]

    async def stderr() -> None:
        pid[0] = await _read_pid(process.stderr, err)
        await err.drain(process.stderr)

    work = asyncio.gather(out.drain(process.stdout), stderr(), process.wait())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        timed_out = True
        await _kill(conn, process, pid[0])
        with contextlib.suppress(Exception):
            await asyncio.wait_for(work, 5)
        work.cancel()
    exit_code = TIMEOUT_EXIT_CODE if timed_out else (process.exit_status if process.exit_status is not None else -1)
    return ExecResult(out.value(), err.value(), exit_code, int((time.monotonic() - started) * 1000), timed_out,
                      out.truncated, err.truncated)  # fmt: skip
