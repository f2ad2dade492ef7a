"""Route metadata: which scope a handler needs and how it is named in the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scope = Literal["admin", "proxy"]


def endpoint(action: str, scope: Scope | None = None, *, audit_template: bool = False) -> Callable[[Handler], Handler]:
    """Mark a handler. ``audit_template`` logs the route template instead of the concrete path
    (for paths that carry something sensitive, such as a token being revoked)."""

    def mark(handler: Handler) -> Handler:
        handler.vault_action = action  # type: ignore[attr-defined]
        handler.vault_scope = scope  # type: ignore[attr-defined]
        handler.vault_audit_template = audit_template  # type: ignore[attr-defined]
        return handler

    return mark
