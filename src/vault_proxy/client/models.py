"""Typed SDK results. Each reads as attributes (``info.auth_type``) and, for scripts written against the
JSON API, as the read-only dict it came from (``info["auth_type"]``, ``dict(info)``, ``info == {...}``).

Nothing secret is ever in a ``repr()``: a new token's ``id`` is left out of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Self


class _Record(Mapping[str, Any]):
    """Dict-style read access to the JSON object a record was built from."""

    raw: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the JSON object."""
        return dict(self.raw)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Build from a JSON object; unknown keys stay reachable through ``raw`` / ``[]``."""
        known = {f.name for f in fields(cls)} - {"raw"}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known}, raw=dict(data))


@dataclass(frozen=True, eq=False)
class ServiceInfo(_Record):
    """A service as the vault shows it: never a secret. Type-specific fields are in ``raw``."""

    name: str
    auth_type: str
    base_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class TokenInfo(_Record):
    """A token: ``id`` only when just created (and never in repr), ``id_prefix`` in listings."""

    scope: str
    created_at: str = ""
    expires_at: str = ""
    name: str | None = None
    services: list[str] | None = None
    id_prefix: str | None = None
    id: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class FileInfo(_Record):
    """A stored file's metadata."""

    name: str
    mime_type: str = "application/octet-stream"
    size: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class ExecResult(_Record):
    """The outcome of an SSH exec; a non-zero ``exit_code`` is a result, not an error."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    duration_ms: int = 0
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Exited with 0 within the time limit."""
        return self.exit_code == 0 and not self.timed_out


class _SessionAddress(NamedTuple):
    addr: str
    expires_at: str


class Session(_SessionAddress):
    """A one-shot TCP session: unpacks as ``addr, expires_at``; ``session["addr"]`` works too.

    ``client_secret`` (also ``session["client_secret"]``) is the one-time password the local client must
    log in with (Redis AUTH, Postgres password, IMAP/SMTP login); None for a session opened without one.
    It is left out of ``repr()``.
    """

    client_secret: str | None

    def __new__(cls, addr: str, expires_at: str, client_secret: str | None = None) -> Session:
        self = super().__new__(cls, addr, expires_at)
        self.client_secret = client_secret
        return self

    def __getnewargs__(self) -> tuple[str, str, str | None]:  # type: ignore[override]
        return self.addr, self.expires_at, self.client_secret

    def __repr__(self) -> str:
        hidden = "..." if self.client_secret else None
        return f"Session(addr={self.addr!r}, expires_at={self.expires_at!r}, client_secret={hidden!r})"

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            if key not in (*self._fields, "client_secret"):
                raise KeyError(key)
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def to_dict(self) -> dict[str, Any]:
        data = self._asdict()
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Session:
        secret = data.get("client_secret")
        return cls(str(data["addr"]), str(data.get("expires_at", "")), str(secret) if secret else None)


def to_jsonable(value: Any) -> Any:
    """Records (and lists of them) as plain JSON values, e.g. for ``json.dumps``."""
    if isinstance(value, _Record | Session):
        return value.to_dict()
    if isinstance(value, list):
        return [to_jsonable(item) for item in value]
    return value
