"""Unlock, lock and password change."""

from __future__ import annotations

import logging

from aiohttp import web

from ...lockout import UnlockThrottled
from ...vault.fileformat import VaultFormatError, WrongPasswordError
from ...vault.store import CorruptVaultError, PasswordTooShortError
from ..bodies import json_response, read_json_object
from ..context import AppContext, ctx
from ..errors import BadRequest, TooManyRequests, Unauthorized
from ..routing import endpoint

log = logging.getLogger("vault_proxy.server")
UNLOCK_FAILED = "unlock failed: wrong password or corrupted vault"


def _password(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} is required")
    return value


async def _checked(context: AppContext, attempt) -> None:
    """Run a password attempt under the brute-force throttle (one attempt at a time)."""
    async with context.unlock_lock:
        try:
            context.throttle.check()
        except UnlockThrottled as exc:
            raise TooManyRequests(str(exc), {"Retry-After": str(exc.retry_after)}) from None
        try:
            await attempt()
        except PasswordTooShortError as exc:
            raise BadRequest(str(exc)) from None
        except (WrongPasswordError, VaultFormatError, CorruptVaultError) as exc:
            context.throttle.record_failure()
            if not isinstance(exc, WrongPasswordError):
                log.warning("unlock failed: %s", exc)
            context.audit.record("unlock.failed", failures=context.throttle.failures)
            raise Unauthorized(UNLOCK_FAILED) from None
        context.throttle.record_success()


@endpoint("unlock")
async def unlock(request: web.Request) -> web.Response:
    context = ctx(request)
    password = _password(await read_json_object(request), "password")
    created: list[bool] = []

    async def attempt() -> None:
        created.append(await context.store.unlock(password))

    await _checked(context, attempt)
    if created[0]:
        log.info("created a new vault in %s", context.store.data_dir)
    context.oauth.resume(context.store.services.values())
    token, record = context.tokens.mint("admin")
    request["token"] = record
    return json_response(context.tokens.token_object(token, record))


@endpoint("lock", "admin")
async def lock(request: web.Request) -> web.Response:
    await ctx(request).lock()
    return json_response({"status": "locked"})


@endpoint("passwd", "admin")
async def change_password(request: web.Request) -> web.Response:
    context = ctx(request)
    body = await read_json_object(request)
    current, new = _password(body, "current_password"), _password(body, "new_password")

    async def attempt() -> None:
        await context.store.change_password(current, new)

    await _checked(context, attempt)
    return json_response({"status": "password changed"})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/auth/unlock", unlock),
        web.post("/auth/lock", lock),
        web.post("/auth/passwd", change_password),
    ]
