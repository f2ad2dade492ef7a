"""``POST /{proto}/{name}/session``: log in upstream, then hand out a one-shot loopback address (SPEC §13)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ...sessions import redis, smtp
from ...sessions.dial import client_tls, dial, start_tls
from ...sessions.errors import SessionError
from ...sessions.listener import OneShot
from ...vault.models import RedisAuth, SmtpAuth
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


async def _redis_upstream(context: AppContext, auth: RedisAuth, skip_verify: bool):
    policy = context.upstream.policy.with_lan()
    stream, _address = await dial("redis", auth.redis_host, auth.redis_port, policy)
    if auth.redis_tls:
        stream = await start_tls("redis", stream, auth.redis_host, client_tls(context.upstream.tls, skip_verify))
    try:
        await redis.login(stream, auth)
    except SessionError:
        stream[1].close()
        raise
    return stream


async def _smtp_upstream(context: AppContext, auth: SmtpAuth, skip_verify: bool):
    tls = client_tls(context.upstream.tls, skip_verify)
    stream, _address = await dial("smtp", auth.smtp_host, auth.smtp_port, context.upstream.policy.with_lan())
    try:
        if auth.smtp_tls == "implicit":
            stream = await start_tls("smtp", stream, auth.smtp_host, tls)
        return await smtp.login(stream, auth, tls)
    except SessionError:
        stream[1].close()
        raise


@endpoint("smtp.session", "proxy")
async def smtp_session(request: web.Request) -> web.Response:
    service = visible_service(request, request.match_info["name"])
    if not isinstance(service.auth, SmtpAuth):
        raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not smtp')
    timeout = _timeout(request)
    context = ctx(request)
    audit = request["audit_extra"] = {"service": service.name}
    try:
        upstream, extensions = await _smtp_upstream(context, service.auth, service.tls_skip_verify)
    except SessionError as exc:
        audit["error"] = exc.message
        raise _SessionFailure(exc) from None
    return await _serve(context, "smtp", service.name, upstream, smtp.local_handshake(extensions), timeout)


async def _serve(context: AppContext, proto: str, name: str, upstream, handshake, timeout: int) -> web.Response:
    session = OneShot(proto, name, upstream, handshake, timeout, context.audit)
    addr = await session.open()
    context.sessions.track(session)
    expires = datetime.fromtimestamp(session.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return json_response({"addr": addr, "expires_at": expires})


@endpoint("redis.session", "proxy")
async def redis_session(request: web.Request) -> web.Response:
    service = visible_service(request, request.match_info["name"])
    if not isinstance(service.auth, RedisAuth):
        raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not redis')
    timeout = _timeout(request)
    context = ctx(request)
    audit = request["audit_extra"] = {"service": service.name}
    try:
        upstream = await _redis_upstream(context, service.auth, service.tls_skip_verify)
    except SessionError as exc:
        audit["error"] = exc.message
        raise _SessionFailure(exc) from None
    return await _serve(context, "redis", service.name, upstream, redis.local_handshake, timeout)


def routes() -> list[web.RouteDef]:
    return [web.post("/redis/{name}/session", redis_session), web.post("/smtp/{name}/session", smtp_session)]
