from __future__ import annotations

from aiohttp import web

from ...oauth.manager import OAUTH_TYPES
from ...vault.info import token_status
from ..bodies import json_response
from ..context import ctx
from ..request_keys import TOKEN
from ..routing import endpoint


@endpoint("health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "unlocked" if ctx(request).store.unlocked else "locked"})


@endpoint("health.tokens", "proxy")
async def token_health(request: web.Request) -> web.Response:
    """Expiry and status of every OAuth / service-account token the caller may use (no token values)."""
    record = request[TOKEN]
    services = ctx(request).store.services
    rows = []
    for name in sorted(services):
        auth = services[name].auth
        if auth.type in OAUTH_TYPES and record.may_use(name):
            has_token = auth.access_token is not None  # type: ignore[union-attr]
            expires_at = auth.expires_at if has_token else ""  # type: ignore[union-attr]
            rows.append({"name": name, "auth_type": auth.type, "expires_at": expires_at,
                         "token_status": token_status(expires_at)})  # fmt: skip
    return json_response(rows)


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health, allow_head=False), web.get("/health/tokens", token_health, allow_head=False)]
