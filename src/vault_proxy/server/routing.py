"""Route metadata: which scope a handler needs and how it is named in the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, NamedTuple

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scope = Literal["admin", "proxy"]


class Endpoint(NamedTuple):
    """What the middleware needs to know about a route, read with one attribute lookup per request."""

    action: str
    scope: Scope | None
    audit_template: bool  # log the route template, not the concrete path
    audited: bool


def endpoint(action: str, scope: Scope | None = None, *, audit_template: bool = False) -> Callable[[Handler], Handler]:
    """Mark a handler. ``audit_template`` logs the route template instead of the concrete path
    (for paths that carry something sensitive, such as a token being revoked)."""

    def mark(handler: Handler) -> Handler:
        handler.vault_endpoint = Endpoint(action, scope, audit_template, action != "health")  # type: ignore[attr-defined]
        return handler

    return mark
