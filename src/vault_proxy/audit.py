"""The audit log: one JSON line per request. Never a credential, query string or body."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends JSON lines to ``path`` (mode 0600), or to stderr when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def record(self, action: str, **fields: Any) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"), "action": action}
        entry.update({k: v for k, v in fields.items() if v is not None and v != ""})
        line = json.dumps(entry, separators=(",", ":"), default=str)
        with self._lock:
            if self._handle is not None:
                self._handle.write(line + "\n")
            else:
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
