"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from ..audit import AuditLog
from ..audit.log import rotation_bytes
from ..audit.vault_link import AuditVault
from ..injectors import STATIC_AUTH_TYPES, injector_for
from ..injectors.oauth import OAuthInjector
from ..netguard import AddressPolicy
from ..oauth.manager import OAUTH_TYPES, TokenManager
from ..outbound.clients import UpstreamClients
from ..ssh.connections import SshConnections
from ..tokens import TokenRegistry
from ..vault.store import VaultStore
from .config import ServerConfig
from .context import CONTEXT, AppContext
from .handlers import auth, files, health, oauth, proxy, services, sessions, ssh, tokens
from .handlers import openapi as openapi_doc
from .middleware import MIDDLEWARES

# The largest body aiohttp itself will buffer: a 5 MiB file plus multipart framing.
CLIENT_MAX_SIZE = 6 * 1024 * 1024


def build_context(config: ServerConfig) -> AppContext:
    audit = AuditLog(config.audit_log, max_bytes=rotation_bytes(config.audit_max_mb))
    store = VaultStore(config.data_dir)
    upstream = UpstreamClients(
        AddressPolicy(config.allow_private), config.ca_file, config.http_proxy, config.upstream_timeout
    )
    oauth = TokenManager(store, upstream, audit)
    injectors = {kind: injector_for(kind) for kind in STATIC_AUTH_TYPES}
    injectors.update(dict.fromkeys(OAUTH_TYPES, OAuthInjector(oauth)))
    ssh = SshConnections(store, upstream.policy, audit)
    return AppContext(config=config, store=store, tokens=TokenRegistry(config.token_ttl), audit=audit,
                      upstream=upstream, oauth=oauth, ssh=ssh, injectors=injectors,
                      audit_vault=AuditVault(audit, store))  # fmt: skip


def create_app(config: ServerConfig) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=CLIENT_MAX_SIZE)
    context = build_context(config)
    app[CONTEXT] = context
    for module in (health, auth, oauth, tokens, services, files, proxy, ssh, sessions):
        app.add_routes(module.routes())
    app.add_routes(openapi_doc.routes())  # GET /openapi.json, no token

    async def shutdown(_app: web.Application) -> None:
        await context.lock()
        await context.upstream.close()
        context.audit.close()

    app.on_shutdown.append(shutdown)
    return app
