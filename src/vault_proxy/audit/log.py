"""The audit log writer: one chained JSON line per event (format in ``chain.py``).

Every proxied call writes a line, so this sits on the hot path (bench/proxy_cost.py measures it):
lines are formatted directly for the plain types they hold, the timestamp's seconds part is formatted
once per second, the HMAC reuses the key's hashed pad blocks, and each line is one unbuffered
``write(2)`` on an ``O_APPEND`` descriptor (whole lines, nothing held back if the process dies).
Chaining hashes each line's body once (SHA-256), plus an HMAC of that 32-byte digest when keyed.

The chain state (last ``seq`` and the SHA-256 of the last line) lives in memory and is read back from
the end of the file on start, so a restarted server continues the chain. When the file reaches
``max_bytes`` it is renamed ``<name>.1`` (older ones shift to ``.2``, ``.3`` … and are never deleted)
and the first line of the new file chains to the last line of the old one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from hashlib import sha256
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Any

from .chain import GENESIS, LineMac, link_hash, parse

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 100 * MIB
MAX_MB_ENV = "VAULT_PROXY_AUDIT_MAX_MB"
_TAIL_READ = 64 * 1024


class _Clock:
    """UTC timestamps like ``2026-11-29T02:47:18.123Z``."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        millis = time.time_ns() // 1_000_000
        second, milli = divmod(millis, 1000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = second
        return f"{self._prefix}{milli:03d}Z"


def milliseconds(seconds: float) -> str:
    """A duration as a JSON number of milliseconds with microsecond digits (``12.345``)."""
    whole, micros = divmod(int(seconds * 1_000_000), 1000)
    return f"{whole}.{micros:03d}"


def _json_head(time_text: str, entry: dict[str, Any]) -> str:
    """``entry`` as a JSON object without its closing brace, ``time`` first. Keys are our identifiers."""
    parts = [f'{{"time":"{time_text}"']
    for key, value in entry.items():
        kind = type(value)
        if kind is str:
            parts.append(f'"{key}":{_json_str(value)}')
        elif kind is int or (kind is float and value == value and abs(value) != float("inf")):
            parts.append(f'"{key}":{value!r}')
        else:  # bool, None, lists, anything else: the json module (str() as the last resort)
            parts.append(f'"{key}":{json.dumps(value, default=str)}')
    return ",".join(parts)


def parse_max_mb(text: str) -> float:
    """A rotation size in MiB as given to ``--audit-max-mb`` (decimals allowed; 0 = never rotate)."""
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of MiB") from None
    if not math.isfinite(megabytes) or megabytes < 0:
        raise ValueError(f"{text!r} must be a number of MiB >= 0 (0 = never rotate)")
    return megabytes


def rotation_bytes(megabytes: float) -> int | None:
    """``AuditLog``'s ``max_bytes`` for a size in MiB: None (never rotate) for 0, else at least 1 byte."""
    return max(1, int(megabytes * MIB)) if megabytes > 0 else None


def audit_max_bytes(environ: Mapping[str, str] = os.environ) -> int | None:
    """The rotation size from ``VAULT_PROXY_AUDIT_MAX_MB`` alone, default 100 MiB.

    The server takes it from ``--audit-max-mb`` (the same variable, via click's ``auto_envvar_prefix``);
    this is for code that opens an ``AuditLog`` without the server's flags.
    """
    text = environ.get(MAX_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return rotation_bytes(parse_max_mb(text))
    except ValueError as exc:
        raise ValueError(f"{MAX_MB_ENV}: {exc}") from None


def rotated_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def rotated_numbers(path: Path) -> list[int]:
    """The N of every ``<path>.N`` that exists, ascending (1 is the newest rotated file)."""
    prefix = path.name + "."
    numbers = []
    for entry in path.parent.glob(f"{path.name}.*"):
        suffix = entry.name[len(prefix) :]
        if suffix.isdigit() and not suffix.startswith("0"):
            numbers.append(int(suffix))
    return sorted(numbers)


def last_lines(path: Path) -> list[bytes]:
    """The last lines of ``path`` (at least one whole line when the file has any), without newlines.

    A final fragment without a newline (a write cut short) is kept as the last element.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with handle:
        size = handle.seek(0, os.SEEK_END)
        window = _TAIL_READ
        while True:
            start = max(0, size - window)
            handle.seek(start)
            lines = handle.read(size - start).split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            if start > 0:
                lines = lines[1:]  # the first piece may be the end of a longer line
            if lines or start == 0:
                return lines
            window *= 4


class AuditLog:
    """Appends chained JSON lines to ``path`` (mode 0600), or to stderr when ``path`` is None."""

    def __init__(self, path: Path | None, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes or None
        self._rotate_at = self.max_bytes if self.max_bytes is not None and path is not None else float("inf")
        self._lock = threading.Lock()
        self._clock = _Clock()
        self._fd: int | None = None
        self._size = 0
        self._mac: LineMac | None = None
        self._seq = 0
        self._prev = GENESIS
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._resume(path)
            self._open()
        self.start = (self._seq, self._prev)  # the chain as found on disk at start

    # -- chain state -------------------------------------------------------------------------
    def _resume(self, path: Path) -> None:
        """Continue the chain from the last line on disk (the newest rotated file if ours is empty)."""
        lines = last_lines(path)
        if not lines:
            numbers = rotated_numbers(path)
            lines = last_lines(rotated_path(path, numbers[0])) if numbers else []
        if not lines:
            return
        self._prev = link_hash(lines[-1])  # chain to the last line as it is, even a torn one
        for raw in reversed(lines):
            chained = parse(raw)
            if chained is not None:
                self._seq = chained.seq
                break

    def _open(self) -> None:
        assert self.path is not None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        if self._size and not self._ends_with_newline():
            self._write_all(b"\n")  # end a torn last line, so ours starts on a line of its own

    def _ends_with_newline(self) -> bool:
        assert self.path is not None
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    @property
    def seq(self) -> int:
        """The ``seq`` of the last line written (0: none yet)."""
        return self._seq

    def set_key(self, key: bytes | None) -> None:
        """The HMAC key for the lines that follow (None: plain SHA-256 lines marked ``"mac":false``)."""
        with self._lock:
            self._mac = LineMac(key) if key is not None else None

    def sync_mark(self) -> tuple[int, str] | None:
        """``(seq, SHA-256)`` of the last line, once it is on disk (fsync): the vault's last-hash record.

        None when nothing is written to a file (stderr log, or no line yet).
        """
        with self._lock:
            if self._fd is None or self._seq == 0:
                return None
            fd, mark = os.dup(self._fd), (self._seq, self._prev)
        try:
            os.fsync(fd)  # outside the lock: the event loop keeps writing lines meanwhile
        finally:
            os.close(fd)
        return mark

    # -- writing -----------------------------------------------------------------------------
    def record(self, action: str, **fields: Any) -> None:
        """One event; fields that are None or empty are left out."""
        entry: dict[str, Any] = {"action": action}
        for key, value in fields.items():
            if value is not None and value != "":
                entry[key] = value
        self.write(entry)

    def write(self, entry: dict[str, Any]) -> None:
        """One event from a ready dict (``action`` first); the time is added here."""
        self._append(_json_head(self._clock.now(), entry))

    def proxy_call(
        self, token: str, scope: str, service: str, method: str, path: str, status: int, duration: float, stats: Any
    ) -> None:
        """The line for one proxied HTTP call: written on every call, so formatted in one step.

        ``stats`` is the call's ``CallStats`` (bytes each way, upstream status, redactions, error).
        """
        line = (
            f'{{"time":"{self._clock.now()}","action":"proxy","token":{_json_str(token)},"scope":{_json_str(scope)},'
            f'"service":{_json_str(service)},"method":{_json_str(method)},"path":{_json_str(path)},'
            f'"status":{status},"duration_ms":{milliseconds(duration)},"bytes":{stats.bytes_out},'
            f'"bytes_in":{stats.bytes_in}'
        )
        if stats.origin:
            line += f',"upstream":{_json_str(stats.origin)}'
        if stats.upstream_status is not None:
            line += f',"upstream_status":{stats.upstream_status}'
        if stats.redactions:
            line += f',"redactions":{stats.redactions}'
        if stats.error:
            line += f',"error":{_json_str(stats.error)}'
        if stats.truncated:
            line += ',"truncated":true'
        self._append(line)

    def _append(self, head: str) -> None:
        """Chain ``head`` (a JSON object without its closing brace) and write it as one line."""
        with self._lock:
            seq = self._seq + 1
            mac = self._mac
            if mac is not None:
                body = f'{head},"seq":{seq},"prev":"{self._prev}"'.encode()
                content = sha256(body)
                link, digest = content.hexdigest(), mac.hexdigest(content.digest())
            else:
                body = f'{head},"seq":{seq},"mac":false,"prev":"{self._prev}"'.encode()
                link = digest = sha256(body).hexdigest()
            data = body + f',"hash":"{digest}"}}\n'.encode()
            if self._fd is None:
                sys.stderr.write(data.decode())
                sys.stderr.flush()
            else:
                self._write_all(data)
            self._seq, self._prev = seq, link
            if self._size >= self._rotate_at:
                self._rotate()

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        written = os.write(self._fd, data)
        while written < len(data):
            written += os.write(self._fd, data[written:])
        self._size += written

    def _rotate(self) -> None:
        """``<name>`` → ``<name>.1`` (``.1`` → ``.2`` …); the chain simply goes on in the new file."""
        assert self.path is not None and self._fd is not None
        os.fsync(self._fd)  # once per file: the vault's record may name a line in it
        os.close(self._fd)
        self._fd = None
        for number in reversed(rotated_numbers(self.path)):
            os.replace(rotated_path(self.path, number), rotated_path(self.path, number + 1))
        os.replace(self.path, rotated_path(self.path, 1))
        self._open()

    def close(self) -> None:
        with self._lock:
            self._rotate_at = float("inf")  # later lines go to stderr
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
