"""``POST /{proto}/{name}/session``: log in upstream, then hand out a one-shot loopback address (SPEC §13)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web

from ...sessions import imap, postgres, redis, smtp
from ...sessions.dial import Stream, client_tls, dial, start_tls
from ...sessions.errors import SessionError
from ...sessions.listener import LocalHandshake, OneShot
from ...vault.models import ImapAuth, PostgresAuth, RedisAuth, Service, SmtpAuth
from ..bodies import json_response
from ..context import AppContext, ctx
from ..errors import ApiError, BadRequest
from ..request_keys import AUDIT_EXTRA
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
    if not text.isdecimal() or not 0 < int(text) <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be whole seconds from 1 to {MAX_TIMEOUT}")
    return int(text)


# Each login gets the dialled stream, the service's auth and the TLS context; it does any implicit TLS
# itself and returns the logged-in stream with the local side for the client.
Login = Callable[[Stream, Any, ssl.SSLContext], Awaitable[tuple[Stream, LocalHandshake]]]


class Protocol(NamedTuple):
    auth_model: type
    address: Callable[[Any], tuple[str, int]]
    login: Login


async def _redis_login(stream: Stream, auth: RedisAuth, tls: ssl.SSLContext) -> tuple[Stream, LocalHandshake]:
    if auth.redis_tls:
        stream = await start_tls("redis", stream, auth.redis_host, tls)
    await redis.login(stream, auth)
    return stream, redis.local_handshake


async def _smtp_login(stream: Stream, auth: SmtpAuth, tls: ssl.SSLContext) -> tuple[Stream, LocalHandshake]:
    if auth.smtp_tls == "implicit":
        stream = await start_tls("smtp", stream, auth.smtp_host, tls)
    stream, extensions = await smtp.login(stream, auth, tls)
    return stream, smtp.local_handshake(extensions)


async def _imap_login(stream: Stream, auth: ImapAuth, tls: ssl.SSLContext) -> tuple[Stream, LocalHandshake]:
    if auth.imap_tls == "implicit":
        stream = await start_tls("imap", stream, auth.imap_host, tls)
    stream, capabilities = await imap.login(stream, auth, tls)
    return stream, imap.local_handshake(capabilities)


async def _postgres_login(stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext) -> tuple[Stream, LocalHandshake]:
    stream, state = await postgres.login(stream, auth, tls)
    return stream, postgres.local_handshake(state)


PROTOCOLS: dict[str, Protocol] = {
    "imap": Protocol(ImapAuth, lambda a: (a.imap_host, a.imap_port), _imap_login),
    "smtp": Protocol(SmtpAuth, lambda a: (a.smtp_host, a.smtp_port), _smtp_login),
    "redis": Protocol(RedisAuth, lambda a: (a.redis_host, a.redis_port), _redis_login),
    "postgres": Protocol(PostgresAuth, lambda a: (a.postgres_host, a.postgres_port), _postgres_login),
}


async def _open(context: AppContext, proto: str, service: Service) -> tuple[Stream, LocalHandshake]:
    """Dial (address policy with private ranges allowed) and log in upstream; raises SessionError."""
    spec = PROTOCOLS[proto]
    host, port = spec.address(service.auth)
    stream, _address = await dial(proto, host, port, context.upstream.policy.with_lan())
    try:
        return await spec.login(stream, service.auth, client_tls(context.upstream.tls, service.tls_skip_verify))
    except SessionError:
        stream[1].close()
        raise


def _session_endpoint(proto: str):
    auth_model = PROTOCOLS[proto].auth_model

    @endpoint(f"{proto}.session", "proxy")
    async def open_session(request: web.Request) -> web.Response:
        service = visible_service(request, request.match_info["name"])
        if not isinstance(service.auth, auth_model):
            raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not {proto}')
        timeout = _timeout(request)
        context = ctx(request)
        audit = request[AUDIT_EXTRA] = {"service": service.name}
        try:
            upstream, handshake = await _open(context, proto, service)
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
