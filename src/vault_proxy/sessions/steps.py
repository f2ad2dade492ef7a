"""What a session's sans-I/O pieces hand back to the splice, and the one-time client secret.

A client filter is fed the client's bytes and answers with a :class:`Step`: bytes for the upstream,
bytes to answer the client with directly, and whether the session must end (with the reason the audit
line records). A reply filter is fed the upstream's bytes and returns what the client may see. Neither
touches a socket: ``listener.py`` does the I/O, so each protocol's rules are tested with plain bytes.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

CLIENT_SECRET_BYTES = 16  # 32 hex characters


@dataclass
class Step:
    to_upstream: bytes = b""
    to_client: bytes = b""
    close: str | None = None  # set: send ``to_client``, then end the session (audited with this reason)


class ClientFilter(Protocol):
    """Client → upstream, after the local handshake (or, for Redis, from the first byte)."""

    @property
    def logged_in(self) -> bool: ...

    def feed(self, data: bytes) -> Step: ...


class ReplyFilter(Protocol):
    """Upstream → client: ``feed`` returns what is safe to send now, ``flush`` the rest at end of stream."""

    hits: int

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def new_client_secret() -> str:
    return secrets.token_hex(CLIENT_SECRET_BYTES)


def secret_matches(given: bytes | str, expected: str) -> bool:
    """Constant-time comparison of what the client sent with the session's client secret."""
    raw = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
    return hmac.compare_digest(raw, expected.encode())
