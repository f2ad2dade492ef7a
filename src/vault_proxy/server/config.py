"""Server settings, as parsed from flags / ``VAULT_PROXY_*`` environment variables."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A start-up setting is unusable; the message tells the operator what to change."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:8390"
    data_dir: Path = field(default_factory=lambda: Path("~/.vault-proxy").expanduser())
    token_ttl: float = 24 * 3600
    tls_cert: Path | None = None
    tls_key: Path | None = None
    http_proxy: str | None = None
    ca_file: Path | None = None
    allow_private: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    audit_log: Path | None = None  # None: stderr only
    max_request_mb: int = 10

    @property
    def unix_socket(self) -> Path | None:
        return Path(self.listen[len("unix:") :]) if self.listen.startswith("unix:") else None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def host_port(self) -> tuple[str, int]:
        """Split ``host:port`` (``[::1]:8390`` for IPv6)."""
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--listen {self.listen!r} must be host:port or unix:/path.sock")
        return host.strip("[]") or "127.0.0.1", int(port)

    def validate(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        if self.unix_socket is not None:
            return
        host, _ = self.host_port()
        if not self.tls and not is_loopback(host):
            raise ConfigError(
                f"refusing to listen on {host} without TLS: tokens would cross the network in clear. "
                "Give --tls-cert and --tls-key, or listen on 127.0.0.1 / ::1 / a unix socket."
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
