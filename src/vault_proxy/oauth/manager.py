"""Access tokens for oauth2_client and service_account services: cached, refreshed once, persisted.

- Lazy: a call uses the stored access token unless it is missing or expires within 30 s.
- Single-flight: one refresh per service at a time; callers that waited re-read the stored token.
- Persisted: the new access token, its expiry and a rotated refresh token go into the vault file, so
  they survive a restart.
- Proactive: after each refresh a timer renews the token at 90 % of its lifetime (at least 30 s
  later; 5 min after a failed attempt). Timers die with the service (delete) and on lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from pydantic import SecretStr

from ..audit import AuditLog
from ..outbound.clients import UpstreamClients
from ..vault.models import OAuth2ClientAuth, Service, ServiceAccountAuth
from ..vault.secret import reveal
from ..vault.store import VaultStore
from .grants import (
    JWT_BEARER_GRANT,
    TokenEndpointError,
    TokenGrant,
    refresh_form,
    request_token,
    service_account_assertion,
)
from .sources import client_settings, service_account_settings

REFRESH_MARGIN = timedelta(seconds=30)
PROACTIVE_SHARE = 0.9
MIN_PROACTIVE_DELAY = 30.0
RETRY_DELAY = 300.0
OAUTH_TYPES = frozenset({"oauth2_client", "service_account"})


def parse_expiry(expires_at: str) -> datetime | None:
    if not expires_at:
        return None
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def usable_token(auth: OAuth2ClientAuth | ServiceAccountAuth, now: datetime | None = None) -> str:
    """The stored access token if it is good for at least another 30 s, else ''."""
    token = reveal(auth.access_token)
    expiry = parse_expiry(auth.expires_at)
    if not token or expiry is None:
        return ""
    return token if expiry - (now or datetime.now(UTC)) > REFRESH_MARGIN else ""


class _ServiceGone(Exception):
    """The service was deleted or replaced while its token was being refreshed."""


class TokenManager:
    def __init__(self, store: VaultStore, upstream: UpstreamClients, audit: AuditLog) -> None:
        self._store = store
        self._upstream = upstream
        self._audit = audit
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    async def access_token(self, service: Service) -> str:
        """A valid access token for ``service``; raises ``TokenEndpointError`` when none can be had."""
        token = usable_token(service.auth)  # type: ignore[arg-type]
        if token:
            return token
        async with self._locks.setdefault(service.name, asyncio.Lock()):
            current = self._store.services.get(service.name)
            if current is not None and current.auth.type == service.auth.type:
                service = current  # another caller may have refreshed while we waited
                token = usable_token(service.auth)  # type: ignore[arg-type]
                if token:
                    return token
            return await self._refresh(service)

    async def _refresh(self, service: Service) -> str:
        grant = await self._fetch(service)
        await self._persist(service, grant)
        self._audit.record("oauth.refresh", service=service.name, expires_in=grant.expires_in,
                           rotated=bool(grant.refresh_token) or None)  # fmt: skip
        self._schedule(service.name, max(MIN_PROACTIVE_DELAY, grant.expires_in * PROACTIVE_SHARE))
        return grant.access_token

    async def _fetch(self, service: Service) -> TokenGrant:
        auth = service.auth
        files = self._store.files
        if isinstance(auth, OAuth2ClientAuth):
            settings = client_settings(auth, files)
            form = refresh_form(settings.client_id, settings.client_secret, settings.refresh_token, settings.scopes)
            token_url = settings.token_url
        elif isinstance(auth, ServiceAccountAuth):
            sa = service_account_settings(auth, files)
            assertion = service_account_assertion(sa.private_key, sa.client_email, sa.token_url, sa.scopes, sa.subject)
            form, token_url = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}, sa.token_url
        else:
            raise TokenEndpointError(f"{auth.type} services have no OAuth token")
        await self._check_target(token_url)
        return await request_token(self._upstream.session(False), token_url, form, auth.secret_values())

    async def _check_target(self, token_url: str) -> None:
        """The token URL meets the same SSRF policy as any base_url (also behind --http-proxy)."""
        parts = urlsplit(token_url)
        try:
            await self._upstream.precheck(parts.hostname or "", parts.port or 443, False)
        except Exception as exc:  # noqa: BLE001 - AddressNotAllowed, ResolveFailed
            raise TokenEndpointError(f"token URL refused: {exc}") from None

    async def _persist(self, used: Service, grant: TokenGrant) -> None:
        expires_at = (datetime.now(UTC) + timedelta(seconds=grant.expires_in)).isoformat(timespec="seconds")
        updates: dict[str, object] = {"access_token": SecretStr(grant.access_token),
                                      "expires_at": expires_at.replace("+00:00", "Z")}  # fmt: skip
        if grant.refresh_token and isinstance(used.auth, OAuth2ClientAuth):
            updates["refresh_token"] = SecretStr(grant.refresh_token)

        def build(current: Service | None) -> Service:
            if current is None or current.auth.type != used.auth.type or not _same_source(current, used):
                raise _ServiceGone  # deleted or re-configured meanwhile: keep what the admin set
            return current.model_copy(update={"auth": current.auth.model_copy(update=updates)})

        try:
            await self._store.put_service(used.name, build)
        except _ServiceGone:
            pass
        except Exception as exc:  # noqa: BLE001 - a failed save must not pass silently
            raise TokenEndpointError(f"token refreshed but could not be saved: {type(exc).__name__}") from None

    # -- proactive refresh ----------------------------------------------------------------------------

    def resume(self, services: Iterable[Service]) -> None:
        """After an unlock: renew cached tokens proactively again (90 % of their remaining time)."""
        now = datetime.now(UTC)
        for service in services:
            if service.auth.type not in OAUTH_TYPES or not service.auth.access_token:  # type: ignore[union-attr]
                continue
            expiry = parse_expiry(service.auth.expires_at)  # type: ignore[union-attr]
            remaining = (expiry - now).total_seconds() if expiry is not None else 0.0
            self._schedule(service.name, max(MIN_PROACTIVE_DELAY, remaining * PROACTIVE_SHARE))

    def _schedule(self, name: str, delay: float) -> None:
        self.forget(name, keep_lock=True)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._start_proactive, name)

    def _start_proactive(self, name: str) -> None:
        self._timers.pop(name, None)
        task = asyncio.get_running_loop().create_task(self._proactive(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _proactive(self, name: str) -> None:
        service = self._store.services.get(name) if self._store.unlocked else None
        if service is None or service.auth.type not in OAUTH_TYPES:
            return
        try:
            async with self._locks.setdefault(name, asyncio.Lock()):
                current = self._store.services.get(name)
                if current is not None and current.auth.type in OAUTH_TYPES:
                    await self._refresh(current)
        except TokenEndpointError as exc:
            self._audit.record("oauth.refresh_failed", service=name, error=exc.detail, retry_in_s=int(RETRY_DELAY))
            self._schedule(name, RETRY_DELAY)

    def forget(self, name: str, *, keep_lock: bool = False) -> None:
        """Cancel the service's proactive refresh (service deleted, or a new one scheduled)."""
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if not keep_lock:
            self._locks.pop(name, None)

    async def close(self) -> None:
        """On lock: no timer or refresh may outlive the unlocked vault."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._locks.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def _same_source(current: Service, used: Service) -> bool:
    """Nothing the refresh depended on changed since it started."""
    a, b = current.auth, used.auth
    keys = ("client_id", "client_secret", "token_url", "refresh_token", "client_secret_file", "token_file",
            "file_ref", "sa_token_url", "sa_subject", "scopes", "sa_scopes")  # fmt: skip
    return all(getattr(a, key, None) == getattr(b, key, None) for key in keys)
