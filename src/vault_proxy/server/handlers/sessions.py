"""``POST /{proto}/{name}/session``: log in upstream, then hand out a one-shot loopback address (SPEC §13)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from ...sessions import redis, smtp
from ...sessions.dial import Stream, client_tls, dial, start_tls
from ...sessions.errors import SessionError
from ...sessions.listener import LocalHandshake, OneShot
from ...vault.models import RedisAuth, Service, SmtpAuth
from ..bodies import json_response
from ..context import AppContext, ctx
from ..errors import ApiError, BadRequest
from ..routing import endpoint
from .services import visible_service

DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 300


class _SessionFailure(ApiError):
    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.status = error.status


def _timeout(request: web.Request) -> int:
    text = request.query.get("timeout", str(DEFAULT_TIMEOUT))
    if not text.isdigit() or not 0 < int(text) <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be whole seconds from 1 to {MAX_TIMEOUT}")
    return int(text)


async def _open_redis(context: AppContext, service: Service) -> tuple[Stream, LocalHandshake]:
    auth = service.auth
    assert isinstance(auth, RedisAuth)
    stream, _address = await dial("redis", auth.redis_host, auth.redis_port, context.upstream.policy.with_lan())
    try:
        if auth.redis_tls:
            tls = client_tls(context.upstream.tls, service.tls_skip_verify)
            stream = await start_tls("redis", stream, auth.redis_host, tls)
        await redis.login(stream, auth)
    except SessionError:
        stream[1].close()
        raise
    return stream, redis.local_handshake


async def _open_smtp(context: AppContext, service: Service) -> tuple[Stream, LocalHandshake]:
    auth = service.auth
    assert isinstance(auth, SmtpAuth)
    tls = client_tls(context.upstream.tls, service.tls_skip_verify)
    stream, _address = await dial("smtp", auth.smtp_host, auth.smtp_port, context.upstream.policy.with_lan())
    try:
        if auth.smtp_tls == "implicit":
            stream = await start_tls("smtp", stream, auth.smtp_host, tls)
        stream, extensions = await smtp.login(stream, auth, tls)
    except SessionError:
        stream[1].close()
        raise
    return stream, smtp.local_handshake(extensions)


Opener = Callable[[AppContext, Service], Awaitable[tuple[Stream, LocalHandshake]]]
# Each protocol: the auth model its services use and how to dial and log in upstream.
PROTOCOLS: dict[str, tuple[type, Opener]] = {"redis": (RedisAuth, _open_redis), "smtp": (SmtpAuth, _open_smtp)}


def _session_endpoint(proto: str):
    auth_model, opener = PROTOCOLS[proto]

    @endpoint(f"{proto}.session", "proxy")
    async def open_session(request: web.Request) -> web.Response:
        service = visible_service(request, request.match_info["name"])
        if not isinstance(service.auth, auth_model):
            raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not {proto}')
        timeout = _timeout(request)
        context = ctx(request)
        audit = request["audit_extra"] = {"service": service.name}
        try:
            upstream, handshake = await opener(context, service)
        except SessionError as exc:
            audit["error"] = exc.message
            raise _SessionFailure(exc) from None
        session = OneShot(proto, service.name, upstream, handshake, timeout, context.audit)
        addr = await session.open()
        context.sessions.track(session)
        expires = datetime.fromtimestamp(session.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return json_response({"addr": addr, "expires_at": expires})

    return open_session


def routes() -> list[web.RouteDef]:
    return [web.post(f"/{proto}/{{name}}/session", _session_endpoint(proto)) for proto in PROTOCOLS]
