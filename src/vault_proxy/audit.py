"""The audit log: one JSON line per request. Never a credential, query string or body.

Every proxied call writes a line, so this sits on the hot path (bench/proxy.py measures it): lines
are formatted directly for the plain types they hold, the timestamp's seconds part is formatted once
per second, and each line is one unbuffered ``write(2)`` on an ``O_APPEND`` descriptor (whole lines,
nothing held back in a buffer if the process dies).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Any


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


def _json_line(time_text: str, entry: dict[str, Any]) -> str:
    """``entry`` as one JSON object line, ``time`` first. Keys are the code's own identifiers."""
    parts = [f'{{"time":"{time_text}"']
    for key, value in entry.items():
        kind = type(value)
        if kind is str:
            parts.append(f'"{key}":{_json_str(value)}')
        elif kind is int or (kind is float and value == value and abs(value) != float("inf")):
            parts.append(f'"{key}":{value!r}')
        else:  # bool, None, lists, anything else: the json module (str() as the last resort)
            parts.append(f'"{key}":{json.dumps(value, default=str)}')
    return ",".join(parts) + "}\n"


class AuditLog:
    """Appends JSON lines to ``path`` (mode 0600), or to stderr when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._clock = _Clock()
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, action: str, **fields: Any) -> None:
        """One event; fields that are None or empty are left out."""
        entry: dict[str, Any] = {"action": action}
        for key, value in fields.items():
            if value is not None and value != "":
                entry[key] = value
        self.write(entry)

    def write(self, entry: dict[str, Any]) -> None:
        """One event from a ready dict (``action`` first); the time is added here."""
        self._append(_json_line(self._clock.now(), entry))

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
        if stats.upstream_status is not None:
            line += f',"upstream_status":{stats.upstream_status}'
        if stats.redactions:
            line += f',"redactions":{stats.redactions}'
        if stats.error:
            line += f',"error":{_json_str(stats.error)}'
        if stats.truncated:
            line += ',"truncated":true'
        self._append(line + "}\n")

    def _append(self, line: str) -> None:
        with self._lock:
            if self._fd is None:
                sys.stderr.write(line)
                sys.stderr.flush()
                return
            data = line.encode()
            while data:
                data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
