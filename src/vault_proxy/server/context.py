"""Everything a handler needs, in one object stored on the aiohttp app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..audit import AuditLog
from ..audit.vault_link import AuditVault
from ..injectors import Injector
from ..lockout import UnlockThrottles
from ..oauth.consent import ConsentStates
from ..oauth.manager import TokenManager
from ..outbound.clients import UpstreamClients
from ..proxy.cookies import CookieJars
from ..proxy.prepared import PreparedServices
from ..sessions.listener import TcpSessions
from ..ssh.connections import SshConnections
from ..tokens import TokenRegistry
from ..vault.store import VaultStore
from .config import ListenerIndex, ServerConfig

LockHook = Callable[[], Awaitable[None] | None]


@dataclass
class AppContext:
    config: ServerConfig
    store: VaultStore
    tokens: TokenRegistry
    audit: AuditLog
    upstream: UpstreamClients
    oauth: TokenManager
    ssh: SshConnections
    injectors: dict[str, Injector]
    sessions: TcpSessions = field(default_factory=TcpSessions)
    # Unlock brute-force lockout, one per listener (see ``listener_of``).
    throttle: UnlockThrottles = field(default_factory=UnlockThrottles)
    listeners: ListenerIndex = field(default_factory=ListenerIndex)
    unlock_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cookie_jars: CookieJars = field(default_factory=CookieJars)
    prepared: PreparedServices = field(default_factory=PreparedServices)
    consents: ConsentStates = field(default_factory=ConsentStates)
    # Called on lock: later features (cookie jars, TCP sessions, refresh timers) register here.
    lock_hooks: list[LockHook] = field(default_factory=list)
    # The audit log's key and last-hash record (set by build_context; None in bare test contexts).
    audit_vault: AuditVault | None = None

    async def lock(self) -> None:
        if self.audit_vault is not None:  # first, while the key is there; the rest of lock stays atomic
            await self.audit_vault.checkpoint()
        self.tokens.revoke_all()
        self.store.lock()
        self.cookie_jars.clear()
        self.prepared.clear()
        await self.oauth.close()
        await self.ssh.close()
        await self.sessions.close()
        self.consents.clear()
        for hook in self.lock_hooks:
            result = hook()
            if result is not None:
                await result

    def forget_service(self, name: str) -> None:
        """A service was deleted: every per-service cache and live connection goes with it."""
        self.cookie_jars.drop(name)
        self.prepared.drop(name)
        self.oauth.forget(name)
        self.ssh.forget(name)
        self.sessions.close_service(name)

    def listener_of(self, request: web.Request) -> str:
        """The ``--listen`` address the request came in on (its name, e.g. ``unix:/run/vault.sock``)."""
        transport = request.transport
        return self.listeners.name_of(transport.get_extra_info("sockname") if transport is not None else None)


CONTEXT = web.AppKey("vault_context", AppContext)


def ctx(request: web.Request) -> AppContext:
    return request.app[CONTEXT]
