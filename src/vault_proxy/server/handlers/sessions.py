"""``POST /{proto}/{name}/session``: log in upstream, then hand out a one-shot loopback address (SPEC §13).

Order, so that no failure leaves an upstream login behind: count the session against the caps (429),
bind the loopback port (503 when out of file descriptors), dial and log in upstream (502 / 403 / 503),
then listen. Any failure after the login closes that upstream connection. The answer carries a
one-time ``client_secret`` the local client must log in with, unless ``?client_secret=false``.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web

from ...redaction import SecretSet
from ...sessions import imap, postgres, redis, smtp
from ...sessions.dial import Stream, client_tls, dial, secure
from ...sessions.errors import FD_EXHAUSTED, SessionError
from ...sessions.listener import Driver, OneShot, SessionLimit, SessionsClosed
from ...sessions.steps import new_client_secret
from ...vault.models import ImapAuth, PostgresAuth, RedisAuth, Service, SmtpAuth
from ..bodies import json_response
from ..context import AppContext, ctx
from ..errors import ApiError, BadRequest, TooManyRequests, Unauthorized, VaultLocked
from ..request_keys import AUDIT_EXTRA, TOKEN
from ..routing import endpoint
from .services import visible_service

DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 300
OUT_OF_FILES = "session unavailable: too many open files on the vault server, try again later"


class _SessionFailure(ApiError):
    """A failed session: the message (to the caller and the audit line) masked with every form of the
    service's secrets, whatever the protocol code already did (one last net for server-chosen text)."""

    def __init__(self, error: SessionError, service: Service) -> None:
        super().__init__(login_secrets(service).mask(error.message))
        self.status = error.status


def login_secrets(service: Service) -> SecretSet:
    """The service's secrets plus the encodings a login sends them in (SASL PLAIN and LOGIN base64),
    which a hostile server may echo back in its error text."""
    values = service.secret_values()
    auth = service.auth
    user = getattr(auth, "smtp_user", None) or getattr(auth, "imap_user", None) or getattr(auth, "redis_username", None)
    user = str(user or "")
    encoded = []
    for value in values:
        for form in (value, f"\0{user}\0{value}", f"{user}\0{user}\0{value}"):
            raw = base64.b64encode(form.encode("utf-8"))
            encoded += [raw.decode("ascii"), raw.rstrip(b"=").decode("ascii")]
    return SecretSet([*values, *encoded])


class _Unavailable(ApiError):
    status = 503


def _out_of_files(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is the process running out of file descriptors."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in FD_EXHAUSTED:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _timeout(request: web.Request) -> int:
    text = request.query.get("timeout", str(DEFAULT_TIMEOUT))
    if not (text.isascii() and text.isdecimal()) or not 0 < int(text) <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be whole seconds from 1 to {MAX_TIMEOUT}")
    return int(text)


def _wants_client_secret(request: web.Request) -> bool:
    text = request.query.get("client_secret", "true")
    if text not in ("true", "false"):
        raise BadRequest("client_secret must be true or false")
    return text == "true"


# Each login gets the dialled stream, the service's auth, the TLS context and the client secret; it does
# any implicit TLS itself and returns the logged-in stream with the local side for the client.
Login = Callable[[Stream, Any, ssl.SSLContext, str | None], Awaitable[tuple[Stream, Driver]]]


class Protocol(NamedTuple):
    auth_model: type
    address: Callable[[Any], tuple[str, int]]
    login: Login


async def _redis_login(
    stream: Stream, auth: RedisAuth, tls: ssl.SSLContext, secret: str | None
) -> tuple[Stream, Driver]:
    if auth.redis_tls:
        stream = await secure("redis", stream, auth.redis_host, tls)
    stream = await redis.login(stream, auth)
    return stream, redis.driver(auth, secret)


async def _smtp_login(
    stream: Stream, auth: SmtpAuth, tls: ssl.SSLContext, secret: str | None
) -> tuple[Stream, Driver]:
    if auth.smtp_tls == "implicit":
        stream = await secure("smtp", stream, auth.smtp_host, tls)
    stream, extensions = await smtp.login(stream, auth, tls)
    return stream, smtp.driver(auth, extensions, secret)


async def _imap_login(
    stream: Stream, auth: ImapAuth, tls: ssl.SSLContext, secret: str | None
) -> tuple[Stream, Driver]:
    if auth.imap_tls == "implicit":
        stream = await secure("imap", stream, auth.imap_host, tls)
    stream, capabilities = await imap.login(stream, auth, tls)
    return stream, imap.driver(auth, capabilities, secret)


async def _postgres_login(
    stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext, secret: str | None
) -> tuple[Stream, Driver]:
    stream, state = await postgres.login(stream, auth, tls)
    return stream, postgres.driver(state, auth, secret)


PROTOCOLS: dict[str, Protocol] = {
    "imap": Protocol(ImapAuth, lambda a: (a.imap_host, a.imap_port), _imap_login),
    "smtp": Protocol(SmtpAuth, lambda a: (a.smtp_host, a.smtp_port), _smtp_login),
    "redis": Protocol(RedisAuth, lambda a: (a.redis_host, a.redis_port), _redis_login),
    "postgres": Protocol(PostgresAuth, lambda a: (a.postgres_host, a.postgres_port), _postgres_login),
}


async def _open(context: AppContext, proto: str, service: Service, secret: str | None) -> tuple[Stream, Driver]:
    """Dial (address policy with private ranges allowed) and log in upstream; raises SessionError."""
    spec = PROTOCOLS[proto]
    host, port = spec.address(service.auth)
    stream, _address = await dial(proto, host, port, context.upstream.policy.with_lan())
    try:
        return await spec.login(stream, service.auth, client_tls(context.upstream.tls, service.tls_skip_verify), secret)
    except BaseException:
        stream[1].close()
        raise


async def _start(context: AppContext, proto: str, service: Service, session: OneShot, secret: str | None) -> None:
    """Bind, log in upstream and listen; every failure leaves nothing open."""
    try:
        session.bind()
    except OSError as exc:
        message = OUT_OF_FILES if _out_of_files(exc) else "session unavailable: cannot open a local port"
        raise _Unavailable(message) from None
    try:
        upstream, driver = await _open(context, proto, service, secret)
    except SessionError as exc:
        session.close()
        if _out_of_files(exc):
            raise _Unavailable(OUT_OF_FILES) from None
        raise _SessionFailure(exc, service) from None
    except BaseException:
        session.close()
        raise
    try:
        await session.start(upstream, driver)
    except BaseException as exc:
        upstream[1].close()
        session.close()
        if isinstance(exc, OSError):
            raise _Unavailable(OUT_OF_FILES if _out_of_files(exc) else "session unavailable") from None
        raise


def _session_endpoint(proto: str):
    auth_model = PROTOCOLS[proto].auth_model

    @endpoint(f"{proto}.session", "proxy")
    async def open_session(request: web.Request) -> web.Response:
        service = visible_service(request, request.match_info["name"])
        if not isinstance(service.auth, auth_model):
            raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not {proto}')
        timeout = _timeout(request)
        secret = new_client_secret() if _wants_client_secret(request) else None
        context = ctx(request)
        audit = request[AUDIT_EXTRA] = {"service": service.name, "client_secret": secret is not None}
        config = context.config
        try:
            slot = context.sessions.reserve(request[TOKEN].digest, config.max_sessions_per_token, config.max_sessions)
        except SessionLimit as exc:
            raise TooManyRequests(str(exc)) from None
        session = OneShot(proto, service.name, timeout, context.audit)
        try:
            await _start(context, proto, service, session, secret)
            if not context.tokens.is_live(request[TOKEN]):  # revoked or expired during the login
                raise Unauthorized("token revoked or expired while the session was opening")
            context.sessions.track(session, slot, request[TOKEN].expires_at)
        except BaseException as exc:
            slot.release()
            session.close()
            if isinstance(exc, ApiError):
                audit["error"] = exc.message
            if isinstance(exc, SessionsClosed):
                raise VaultLocked() from None
            raise
        expires = datetime.fromtimestamp(session.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        answer = {"addr": session.addr, "expires_at": expires}
        if secret is not None:
            answer["client_secret"] = secret
        return json_response(answer)

    return open_session


def routes() -> list[web.RouteDef]:
    return [web.post(f"/{proto}/{{name}}/session", _session_endpoint(proto)) for proto in PROTOCOLS]
