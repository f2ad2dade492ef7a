"""The token registry: mint, look up, expire and revoke caller tokens.

A token is 32 random bytes as 64 hex chars, returned once. Only its SHA-256 is kept; lookups go by
that digest and are confirmed with a constant-time compare. Tokens live in memory only: the vault
starts locked, and lock revokes them all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCOPES = ("admin", "proxy")
PREFIX_LEN = 12
MIN_PREFIX_LEN = 8


class TokenError(Exception):
    """Authentication failed; the message is the one the caller sees."""


class TokenNotFoundError(LookupError):
    pass


class AmbiguousPrefixError(ValueError):
    pass


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass(frozen=True)
class TokenRecord:
    digest: bytes = field(repr=False)
    id_prefix: str
    scope: str
    created_at: float
    expires_at: float
    name: str = ""
    services: tuple[str, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def may_use(self, service: str) -> bool:
        return self.services is None or service in self.services

    def public(self) -> dict[str, Any]:
        """The listing form: no token, only its prefix."""
        info: dict[str, Any] = {
            "id_prefix": self.id_prefix,
            "scope": self.scope,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
        }
        if self.name:
            info["name"] = self.name
        if self.services is not None:
            info["services"] = list(self.services)
        return info


class TokenRegistry:
    def __init__(self, default_ttl: float) -> None:
        self.default_ttl = default_ttl
        self._by_digest: dict[bytes, TokenRecord] = {}

    def mint(
        self,
        scope: str,
        *,
        ttl: float | None = None,
        services: list[str] | None = None,
        name: str = "",
    ) -> tuple[str, TokenRecord]:
        """Create a token; returns the token (shown once) and its record."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of: {', '.join(SCOPES)}")
        token = secrets.token_hex(32)
        now = time.time()
        record = TokenRecord(
            digest=_digest(token),
            id_prefix=token[:PREFIX_LEN],
            scope=scope,
            created_at=now,
            expires_at=now + (ttl or self.default_ttl),
            name=name,
            services=tuple(services) if services is not None else None,
        )
        self._purge_expired(now)
        self._by_digest[record.digest] = record
        return token, record

    def token_object(self, token: str, record: TokenRecord) -> dict[str, Any]:
        """The creation response: like the listing, plus the token itself as ``id``."""
        info = record.public()
        del info["id_prefix"]
        return {"id": token, **info}

    def authenticate(self, token: str) -> TokenRecord:
        digest = _digest(token)
        record = self._by_digest.get(digest)
        if record is None or not hmac.compare_digest(record.digest, digest):
            raise TokenError("invalid token")
        if record.expires_at <= time.time():
            self._by_digest.pop(digest, None)
            raise TokenError("token expired")
        return record

    def list(self) -> list[TokenRecord]:
        self._purge_expired(time.time())
        return sorted(self._by_digest.values(), key=lambda r: r.created_at)

    def revoke(self, token_or_prefix: str) -> TokenRecord:
        """Revoke by the full token or by a unique prefix of 8-12 hex chars (its ``id_prefix``)."""
        key = token_or_prefix.strip().lower()
        if len(key) == 64:
            record = self._by_digest.pop(_digest(key), None)
            if record is None:
                raise TokenNotFoundError
            return record
        if len(key) < MIN_PREFIX_LEN:
            raise ValueError(f"token prefix must be at least {MIN_PREFIX_LEN} characters")
        if len(key) > PREFIX_LEN:
            raise ValueError(f"give the full token or its id_prefix ({MIN_PREFIX_LEN}-{PREFIX_LEN} characters)")
        matches = [r for r in self._by_digest.values() if r.id_prefix.startswith(key)]
        if not matches:
            raise TokenNotFoundError
        if len(matches) > 1:
            raise AmbiguousPrefixError(f"token prefix {key!r} is ambiguous")
        return self._by_digest.pop(matches[0].digest)

    def is_live(self, record: TokenRecord) -> bool:
        """Whether ``record`` is still a valid token (not revoked, not expired), e.g. after a long await."""
        return self._by_digest.get(record.digest) is record and record.expires_at > time.time()

    def revoke_all(self) -> None:
        self._by_digest.clear()

    def _purge_expired(self, now: float) -> None:
        for digest in [d for d, r in self._by_digest.items() if r.expires_at <= now]:
            del self._by_digest[digest]
