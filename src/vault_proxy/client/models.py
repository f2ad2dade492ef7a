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


class Session(NamedTuple):
    """A one-shot TCP session: unpacks as ``addr, expires_at``; ``session["addr"]`` works too."""

    addr: str
    expires_at: str

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(key)
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Session:
        return cls(str(data["addr"]), str(data.get("expires_at", "")))


def to_jsonable(value: Any) -> Any:
    """Records (and lists of them) as plain JSON values, e.g. for ``json.dumps``."""
    if isinstance(value, _Record | Session):
        return value.to_dict()
    if isinstance(value, list):
        return [to_jsonable(item) for item in value]
    return value
