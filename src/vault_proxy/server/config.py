"""Server settings, as parsed from flags / ``VAULT_PROXY_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8390"
LISTEN_FORMS = "host:port or unix:/path.sock"
UNIX_PATH_MAX = 107  # sun_path is 108 bytes, NUL included


class ConfigError(ValueError):
    """A start-up setting is unusable; the message tells the operator what to change."""


@dataclass(frozen=True)
class Listener:
    """One ``--listen`` address: a TCP ``host:port`` or a unix socket ``path``."""

    name: str  # canonical form, as logged and as the key of this listener's unlock lockout
    host: str | None = None
    port: int | None = None
    path: Path | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None


def parse_listen(value: str) -> Listener:
    """``127.0.0.1:8390``, ``[::1]:8390``, ``localhost:8390`` or ``unix:/run/vault.sock``."""
    text = value.strip()
    if text.startswith("unix:"):
        raw = text[len("unix:") :]
        if not raw:
            raise ConfigError(f"--listen {value!r}: the unix socket path is empty")
        path = Path(os.path.abspath(raw))
        if len(os.fsencode(str(path))) > UNIX_PATH_MAX:
            raise ConfigError(f"--listen {value!r}: unix socket path longer than {UNIX_PATH_MAX} bytes")
        return Listener(name=f"unix:{path}", path=path)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise ConfigError(f"--listen {value!r} must be {LISTEN_FORMS}")
    if host.startswith("[") != host.endswith("]"):
        raise ConfigError(f"--listen {value!r} must be {LISTEN_FORMS} (IPv6 as [::1]:port)")
    host = host.strip("[]") or "127.0.0.1"
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.lower()
    shown = f"[{host}]" if ":" in host else host
    return Listener(name=f"{shown}:{int(port)}", host=host, port=int(port))


@dataclass(frozen=True)
class ServerConfig:
    # One or more addresses (``--listen`` is repeatable); a single string is accepted too.
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    data_dir: Path = field(default_factory=lambda: Path("~/.vault-proxy").expanduser())
    token_ttl: float = 24 * 3600
    tls_cert: Path | None = None
    tls_key: Path | None = None
    http_proxy: str | None = None
    ca_file: Path | None = None
    allow_private: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    audit_log: Path | None = None  # None: stderr only
    audit_max_mb: float = 100.0  # rotation size of the audit log; 0 = never rotate
    max_request_mb: int = 10
    upstream_timeout: float = 300.0
    max_sessions: int = 256  # open TCP sessions (SPEC §13), pending and active, in all ...
    max_sessions_per_token: int = 8  # ... and per token; 429 beyond

    def __post_init__(self) -> None:
        listen: str | Iterable[str] = self.listen
        object.__setattr__(self, "listen", (listen,) if isinstance(listen, str) else tuple(listen))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """The parsed ``--listen`` addresses, in the order given (``ConfigError`` on a bad one)."""
        return tuple(parse_listen(value) for value in self.listen)

    def validate(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        if not self.listen:
            raise ConfigError(f"--listen needs at least one address ({LISTEN_FORMS})")
        seen: dict[str, str] = {}
        for value, listener in zip(self.listen, self.listeners, strict=True):
            if listener.name in seen:
                same = "is given twice" if seen[listener.name] == value else f"is the same as {seen[listener.name]!r}"
                raise ConfigError(f"--listen {value!r} {same}")
            seen[listener.name] = value
            if listener.host is not None and not self.tls and not is_loopback(listener.host):
                raise ConfigError(
                    f"refusing to listen on {listener.host} without TLS: tokens would cross the network in "
                    "clear. Give --tls-cert and --tls-key, or listen on 127.0.0.1 / ::1 / a unix socket."
                )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ListenerIndex:
    """Tells which ``--listen`` address a connection came in on, from its local socket address.

    The server registers the address each listening socket is bound to. A TCP connection's local
    address equals it, except on a wildcard bind (``0.0.0.0``, ``::``), where the port decides. A
    connection that matches nothing (or whose transport is already gone) gets ``UNKNOWN``: one
    shared name, so it cannot be used to escape a listener's lockout.
    """

    UNKNOWN = "unknown"
    _WILDCARDS = frozenset({"0.0.0.0", "::"})

    def __init__(self) -> None:
        self._exact: dict[object, str] = {}
        self._wildcard: dict[tuple[int, int], str] = {}

    @staticmethod
    def _key(sockname: object) -> object:
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            return (len(sockname), sockname[0], sockname[1])  # 2-tuple IPv4, 4-tuple IPv6
        if isinstance(sockname, bytes):
            return os.fsdecode(sockname)
        return sockname

    def add(self, sockname: object, name: str) -> None:
        key = self._key(sockname)
        self._exact[key] = name
        if isinstance(key, tuple) and key[1] in self._WILDCARDS:
            self._wildcard[(key[0], key[2])] = name

    def name_of(self, sockname: object) -> str:
        if sockname is None or sockname == "":
            return self.UNKNOWN
        key = self._key(sockname)
        name = self._exact.get(key)
        if name is None and isinstance(key, tuple):
            name = self._wildcard.get((key[0], key[2]))
        return name or self.UNKNOWN
