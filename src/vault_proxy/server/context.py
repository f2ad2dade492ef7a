"""Everything a handler needs, in one object stored on the aiohttp app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..audit import AuditLog
from ..injectors import Injector
from ..lockout import UnlockThrottle
from ..oauth.consent import ConsentStates
from ..oauth.manager import TokenManager
from ..proxy.cookies import CookieJars
from ..proxy.prepared import PreparedServices
from ..proxy.upstream import UpstreamClients
from ..sessions.listener import TcpSessions
from ..ssh.connections import SshConnections
from ..tokens import TokenRegistry
from ..vault.store import VaultStore
from .config import ServerConfig

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
    throttle: UnlockThrottle = field(default_factory=UnlockThrottle)
    unlock_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cookie_jars: CookieJars = field(default_factory=CookieJars)
    prepared: PreparedServices = field(default_factory=PreparedServices)
    consents: ConsentStates = field(default_factory=ConsentStates)
    # Called on lock: later features (cookie jars, TCP sessions, refresh timers) register here.
    lock_hooks: list[LockHook] = field(default_factory=list)

    async def lock(self) -> None:
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


CONTEXT = web.AppKey("vault_context", AppContext)


def ctx(request: web.Request) -> AppContext:
    return request.app[CONTEXT]
