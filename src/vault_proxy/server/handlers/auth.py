"""Unlock, lock and password change."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ...lockout import UnlockThrottled
from ...vault.fileformat import VaultFormatError, WrongPasswordError
from ...vault.store import CorruptVaultError, PasswordTooShortError
from ..bodies import json_response, parse_body, read_json_object
from ..context import AppContext, ctx
from ..errors import BadRequest, TooManyRequests, Unauthorized
from ..request_keys import TOKEN
from ..routing import endpoint

log = logging.getLogger("vault_proxy.server")
UNLOCK_FAILED = "unlock failed: wrong password or corrupted vault"
# Only in the server log: the caller gets UNLOCK_FAILED whatever the cause.
RECOVER_HINT = (
    "vault.enc looks damaged: run 'vault-cli recover' to restore it from vault.enc.bak "
    "(it keeps the damaged file; no need to stop the server)"
)
RESAVE_HINT = (
    "vault.enc looks damaged, but this server holds the vault unlocked in memory: any save "
    "(for example 'vault-cli lock') rewrites vault.enc from it"
)


Password = Field(min_length=1)


class UnlockRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    password: str = Password


class PasswdRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    current_password: str = Password
    new_password: str = Password


def _check_throttle(context: AppContext, listener: str) -> None:
    try:
        context.throttle.check(listener)
    except UnlockThrottled as exc:
        raise TooManyRequests(str(exc), {"Retry-After": str(exc.retry_after)}) from None


async def _checked(context: AppContext, listener: str, attempt) -> None:
    """Run a password attempt under ``listener``'s brute-force throttle (one attempt at a time).

    Each listener (``--listen`` address) has its own failure counter and lockout, so a process
    hammering one address cannot lock the operator out of another; a success resets only the
    counter of the listener it came in on.
    """
    _check_throttle(context, listener)  # a locked-out caller does not queue behind running attempts
    async with context.unlock_lock:
        _check_throttle(context, listener)
        try:
            await attempt()
        except PasswordTooShortError as exc:
            raise BadRequest(str(exc)) from None
        except (WrongPasswordError, VaultFormatError, CorruptVaultError) as exc:
            lockout = context.throttle.record_failure(listener)
            if not isinstance(exc, WrongPasswordError):
                log.warning("unlock failed: %s. %s", exc, RESAVE_HINT if context.store.unlocked else RECOVER_HINT)
            failures = context.throttle.failures(listener)
            if lockout:
                log.warning("unlock locked out on %s for %ds after %d failures", listener, lockout, failures)
            context.audit.record("unlock.failed", failures=failures, listener=listener)
            raise Unauthorized(UNLOCK_FAILED) from None
        context.throttle.record_success(listener)


@endpoint("unlock")
async def unlock(request: web.Request) -> web.Response:
    context = ctx(request)
    listener = context.listener_of(request)  # before the body: the transport may be gone after it
    password = parse_body(UnlockRequest, await read_json_object(request)).password
    created: list[bool] = []

    async def attempt() -> None:
        created.append(await context.store.unlock(password))

    await _checked(context, listener, attempt)
    if created[0]:
        log.info("created a new vault in %s", context.store.data_dir)
    context.oauth.resume(context.store.services.values())
    token, record = context.tokens.mint("admin")
    request[TOKEN] = record
    return json_response(context.tokens.token_object(token, record))


@endpoint("lock", "admin")
async def lock(request: web.Request) -> web.Response:
    await ctx(request).lock()
    return json_response({"status": "locked"})


@endpoint("passwd", "admin")
async def change_password(request: web.Request) -> web.Response:
    context = ctx(request)
    listener = context.listener_of(request)
    body = parse_body(PasswdRequest, await read_json_object(request))
    current, new = body.current_password, body.new_password

    async def attempt() -> None:
        await context.store.change_password(current, new)

    await _checked(context, listener, attempt)
    return json_response({"status": "password changed"})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/auth/unlock", unlock),
        web.post("/auth/lock", lock),
        web.post("/auth/passwd", change_password),
    ]
