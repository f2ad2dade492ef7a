"""What every subprocess test peer (sshd, redis-server, ...) shares: a free port, the log, the lifecycle."""

from __future__ import annotations

import random
import socket
import subprocess
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Self

PORT_MIN, PORT_MAX = 20000, 32767  # below the ephemeral range (32768-60999)


def free_port(exclude: Collection[int] = ()) -> int:
    """A port in 20000-32767 (not in ``exclude``) that binds on 127.0.0.1 right now."""
    for _ in range(500):
        port = random.randint(PORT_MIN, PORT_MAX)
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_MIN}-{PORT_MAX}")


class PortTaken(RuntimeError):
    """The daemon lost the race for its port; the caller picks another and retries."""


class ProcessPeer:
    """Subclasses set ``self._proc`` and ``self.log_path`` and implement ``start()`` / ``stop()``."""

    _proc: subprocess.Popen | None
    log_path: Path

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """Everything the daemon logged, across restarts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
