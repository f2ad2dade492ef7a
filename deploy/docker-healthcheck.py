#!/usr/bin/env python3
"""Health check of the vault-proxy container: ``GET /health`` on the server's own listener.

    vault-proxy-healthcheck [URL]

URL is ``https://host:port/health``, ``http://...`` or ``unix:/path.sock``. Without one, the first
address of ``VAULT_PROXY_LISTEN`` (default ``0.0.0.0:8390``) is used: a wildcard host becomes
loopback, and HTTPS is tried first, then plain HTTP (a loopback-only server may have no TLS).

Exits 0 when the server answers 200 with a JSON ``status``, else 1 with the reason on stderr.
The certificate is not verified: the check talks to the container's own loopback listener and sends
nothing secret, and it must work whatever name a user-supplied certificate carries.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
from urllib.parse import urlsplit

TIMEOUT = 4.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def targets(url: str | None, listen: str) -> list[str]:
    """The URLs to try, in order."""
    if url:
        return [url]
    first = next((item.strip() for item in listen.split(",") if item.strip()), "0.0.0.0:8390")
    if first.startswith("unix:"):
        return [first]
    host, _, port = first.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [f"https://{netloc}/health", f"http://{netloc}/health"]


def check(target: str) -> str:
    """``GET /health`` at ``target``; returns the vault status or raises."""
    if target.startswith("unix:"):
        connection: http.client.HTTPConnection = _UnixConnection(target[len("unix:") :])
        path = "/health"
    else:
        parts = urlsplit(target)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port or 443, timeout=TIMEOUT, context=_unverified()
            )
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=TIMEOUT)
        else:
            raise ValueError(f"unsupported URL {target!r}")
        path = parts.path or "/health"
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(65536)
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return str(json.loads(body)["status"])


def main(argv: list[str]) -> int:
    errors = []
    for target in targets(argv[1] if len(argv) > 1 else None, os.environ.get("VAULT_PROXY_LISTEN", "")):
        try:
            status = check(target)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, http.client.HTTPException) as exc:
            errors.append(f"{target}: {exc}")
            continue
        print(f"vault-server at {target}: {status}")
        return 0
    print("unhealthy: " + "; ".join(errors), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
