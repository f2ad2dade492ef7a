"""The listener timeouts of SPEC §3 (no aiohttp import: ``vault-server --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

HEAD_TIMEOUT = 30.0  # seconds from accept (TLS handshake included) to the first complete request head
IDLE_TIMEOUT = 75.0  # seconds a keep-alive connection may wait for (or part way into) its next request


@dataclass(frozen=True)
class ListenerTimeouts:
    head: float = HEAD_TIMEOUT
    idle: float = IDLE_TIMEOUT
