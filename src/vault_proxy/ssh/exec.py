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
            room = self.cap - self.size
            if room > 0:
                self.parts.append(chunk[:room])
                self.size += min(room, len(chunk))
            if len(chunk) > room:
                self.truncated = True

    def value(self) -> bytes:
        return b"".join(self.parts)


async def run_command(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float, cap: int = OUTPUT_CAP
) -> ExecResult:
    """Run ``command``; past ``timeout`` the remote process gets SIGKILL and its channel is closed."""
    started = time.monotonic()
    process = await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
    out, err = _Capped(cap), _Capped(cap)
    work = asyncio.gather(out.drain(process.stdout), err.drain(process.stderr), process.wait())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(Exception):
            process.send_signal("KILL")  # OpenSSH >= 7.9 delivers it to the command
        process.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(work, 5)
        work.cancel()
    exit_code = TIMEOUT_EXIT_CODE if timed_out else (process.exit_status if process.exit_status is not None else -1)
    return ExecResult(out.value(), err.value(), exit_code, int((time.monotonic() - started) * 1000), timed_out,
                      out.truncated, err.truncated)  # fmt: skip
