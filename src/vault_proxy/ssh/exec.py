"""One remote command: bounded output, a hard timeout that kills it, the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
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


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def wrapped(command: str, marker: str) -> str:
    """The command as sent: the session's PID goes to a marker file, then the user's shell runs the command.

    sshd makes each exec session its own process group (setsid), so that PID is the group to kill
    at the timeout; the SSH "signal" request alone is not enough, sshd refuses it in some setups
    (a root login: "session signalling requires privilege separation"). The command runs as a child,
    not via ``exec``: on this machine an ``exec`` of the shell cost ~130 ms per call, the child ~12 ms.
    """
    pid_file = f'"${{TMPDIR:-/tmp}}/.vault-proxy-exec-{marker}"'
    return (f'echo $$ > {pid_file} 2>/dev/null; "${{SHELL:-/bin/sh}}" -c {_quote(command)}; '
            f"rc=$?; rm -f {pid_file}; exit $rc")  # fmt: skip


def kill_command(marker: str) -> str:
    pid_file = f'"${{TMPDIR:-/tmp}}/.vault-proxy-exec-{marker}"'
    return (f'P=$(cat {pid_file} 2>/dev/null) && {{ kill -KILL -- "-$P" 2>/dev/null || kill -KILL "$P"; }}; '
            f"rm -f {pid_file}")  # fmt: skip


async def _kill(conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess, marker: str) -> None:
    with contextlib.suppress(Exception):
        process.send_signal("KILL")  # honoured where sshd allows session signals
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.run(kill_command(marker), check=False), 5)
    process.close()


async def run_command(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float, cap: int = OUTPUT_CAP
) -> ExecResult:
    """Run ``command``; past ``timeout`` its whole process group is killed and its channel closed."""
    started = time.monotonic()
    marker = secrets.token_hex(8)
    process = await conn.create_process(wrapped(command, marker), encoding=None, stdin=asyncssh.DEVNULL)
    out, err = _Capped(cap), _Capped(cap)
    work = asyncio.gather(out.drain(process.stdout), err.drain(process.stderr), process.wait())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        timed_out = True
        await _kill(conn, process, marker)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(work, 5)
        work.cancel()
    exit_code = TIMEOUT_EXIT_CODE if timed_out else (process.exit_status if process.exit_status is not None else -1)
    return ExecResult(out.value(), err.value(), exit_code, int((time.monotonic() - started) * 1000), timed_out,
                      out.truncated, err.truncated)  # fmt: skip
