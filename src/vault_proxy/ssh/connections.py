"""SSH connections on stored keys: address policy, host-key pinning (TOFU), reuse for a short idle time.

A burst of execs shares one connection (each exec is its own channel); a connection unused for
``IDLE_SECONDS`` is closed. A connection belongs to one ``Service`` object: any update of the service
(or an unlock) builds a new one, so a changed key, host or pin never reuses an old connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncssh

from ..audit import AuditLog
from ..netguard import AddressNotAllowed, AddressPolicy, ResolveFailed
from ..outbound.ssh import ssh_connect
from ..vault.fingerprint import fingerprint_sha256
from ..vault.models import Service, SshKeyAuth
from ..vault.secret import reveal
from ..vault.store import VaultStore
from .errors import HostKeyMismatch, SshConnectFailed, SshHostRefused, SshKeyUnusable

CONNECT_TIMEOUT = 10.0
IDLE_SECONDS = 30.0


@dataclass
class _Pooled:
    service: Service
    conn: asyncssh.SSHClientConnection
    last_used: float
    timer: asyncio.TimerHandle | None = None


class SshConnections:
    def __init__(self, store: VaultStore, policy: AddressPolicy, audit: AuditLog) -> None:
        self._store = store
        self._policy = policy.with_lan()
        self._audit = audit
        self._pool: dict[str, _Pooled] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def connected(self, name: str) -> bool:
        pooled = self._pool.get(name)
        return pooled is not None and not pooled.conn.is_closed()

    async def connection(self, service: Service) -> asyncssh.SSHClientConnection:
        """A live connection for ``service`` (reused, or opened and authenticated now)."""
        async with self._locks.setdefault(service.name, asyncio.Lock()):
            pooled = self._pool.get(service.name)
            if pooled is not None and pooled.service is service and not pooled.conn.is_closed():
                self._touch(service.name, pooled)
                return pooled.conn
            if pooled is not None:
                self._drop(service.name)
            conn, current = await self._open(service)
            pooled = self._pool[service.name] = _Pooled(current, conn, time.monotonic())
            self._touch(service.name, pooled)
            return conn

    def _touch(self, name: str, pooled: _Pooled) -> None:
        pooled.last_used = time.monotonic()
        if pooled.timer is not None:
            pooled.timer.cancel()
        pooled.timer = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire, name, pooled)

    def _expire(self, name: str, pooled: _Pooled) -> None:
        if self._pool.get(name) is pooled:
            self._drop(name)

    def touch(self, name: str) -> None:
        """Restart the idle clock after a long-running exec on the connection."""
        pooled = self._pool.get(name)
        if pooled is not None:
            self._touch(name, pooled)

    def _drop(self, name: str) -> None:
        pooled = self._pool.pop(name, None)
        if pooled is not None:
            if pooled.timer is not None:
                pooled.timer.cancel()
            pooled.conn.close()

    def forget(self, name: str) -> None:
        """The service was deleted or replaced: close its connection."""
        self._drop(name)
        self._locks.pop(name, None)

    async def close(self) -> None:
        """On lock: close every connection."""
        conns = [p.conn for p in self._pool.values()]
        for name in list(self._pool):
            self._drop(name)
        self._locks.clear()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)

    # -- opening ------------------------------------------------------------------------------------

    async def _open(self, service: Service) -> tuple[asyncssh.SSHClientConnection, Service]:
        """Connect; returns the connection and the service as stored afterwards (a TOFU pin replaces it)."""
        auth = service.auth
        assert isinstance(auth, SshKeyAuth)
        key = self._client_key(auth)
        pinned = auth.ssh_host_key
        known_hosts = ([asyncssh.import_public_key(pinned)], [], []) if pinned else None
        try:
            conn = await ssh_connect(
                auth.ssh_host, auth.ssh_port, self._policy, timeout=CONNECT_TIMEOUT, username=auth.ssh_user,
                client_keys=[key], known_hosts=known_hosts, keepalive_interval=15,
            )  # fmt: skip
        except AddressNotAllowed as exc:
            raise SshHostRefused(str(exc)) from None
        except ResolveFailed as exc:
            raise SshConnectFailed(f"cannot resolve {auth.ssh_host}: {exc}") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            self._audit.record("ssh.host_key_mismatch", service=service.name, pinned=fingerprint_sha256(pinned),
                               detail=str(exc)[:200])  # fmt: skip
            raise HostKeyMismatch(f"server host key does not match the pin {fingerprint_sha256(pinned)}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise SshConnectFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
        if not pinned:
            service = await self._pin_first_key(service, conn)
        return conn, service

    def _client_key(self, auth: SshKeyAuth) -> asyncssh.SSHKey:
        stored = self._store.files.get(auth.ssh_key_file_ref)
        if stored is None:
            raise SshKeyUnusable(f'ssh_key_file_ref "{auth.ssh_key_file_ref}" is not a stored file')
        passphrase = reveal(auth.ssh_key_passphrase) or None
        try:
            return asyncssh.import_private_key(stored.data(), passphrase)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError):
            hint = "wrong ssh_key_passphrase?" if passphrase else "encrypted key without ssh_key_passphrase?"
            raise SshKeyUnusable(f'ssh key "{auth.ssh_key_file_ref}" cannot be loaded ({hint})') from None

    async def _pin_first_key(self, service: Service, conn: asyncssh.SSHClientConnection) -> Service:
        """Trust on first use: remember the key this server showed; every later connection must match it."""
        server_key = conn.get_server_host_key()
        if server_key is None:
            return service
        line = server_key.export_public_key("openssh").decode("ascii").split()
        pin = f"{line[0]} {line[1]}"

        def build(current: Service | None) -> Service:
            if current is None or not isinstance(current.auth, SshKeyAuth) or current.auth.ssh_host_key:
                raise _NotPinned
            auth = current.auth.model_copy(update={"ssh_host_key": pin})
            return current.model_copy(update={"auth": auth})

        try:
            stored = await self._store.put_service(service.name, build)
        except _NotPinned:
            return service
        self._audit.record("ssh.host_key_pinned", service=service.name, fingerprint=fingerprint_sha256(pin))
        return stored


class _NotPinned(Exception):
    """The service changed meanwhile (deleted, or pinned by someone else)."""
