"""Cross-cutting request handling: security headers, JSON errors, caller auth, the audit line."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ..tokens import TokenError
from .bodies import json_response
from .context import ctx
from .errors import ApiError, Forbidden, Unauthorized, VaultLocked

log = logging.getLogger("vault_proxy.server")

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_HTTP_MESSAGES = {404: "not found", 405: "method not allowed", 413: "request body too large"}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: runs for every response, streamed and error ones included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Server"] = "vault-proxy"  # no version banner


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = json_response({"error": message}, status=status)
    response.headers["X-Vault-Error"] = "1"
    response.headers.update(headers or {})
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_MESSAGES.get(exc.status, exc.reason.lower())
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, message, headers)
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return error_response(500, "internal error")


def _caller_token(request: web.Request) -> tuple[str | None, str | None]:
    """The vault token and the header that carried it (that header is never forwarded upstream)."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None, "Authorization"
    token = request.headers.get("X-Vault-Token")
    if token:
        return token.strip(), "X-Vault-Token"
    if request.path.startswith("/proxy/"):
        return request.headers.get("x-api-key", "").strip() or None, "x-api-key"
    return None, None


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    scope = getattr(request.match_info.handler, "vault_scope", None)
    if scope is None:
        return await handler(request)
    token, header = _caller_token(request)
    if not token:
        raise Unauthorized("authorization required")
    context = ctx(request)
    try:
        record = context.tokens.authenticate(token)  # lock revokes every token: 401 once locked
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    if not context.store.unlocked:
        raise VaultLocked()
    if scope == "admin" and not record.is_admin:
        raise Forbidden("admin scope required")
    request["token"] = record
    request["token_header"] = header
    return await handler(request)


@web.middleware
async def audit_middleware(request: web.Request, handler) -> web.StreamResponse:
    route_handler = request.match_info.handler
    action = getattr(route_handler, "vault_action", None)
    if action is None or action == "health":
        return await handler(request)
    started = time.perf_counter()
    response = await handler(request)
    record = request.get("token")
    extra = request.get("audit")
    resource = request.match_info.route.resource
    path = resource.canonical if getattr(route_handler, "vault_audit_template", False) and resource else request.path
    ctx(request).audit.record(
        action,
        token=record.id_prefix[:8] if record else None,
        scope=record.scope if record else None,
        service=request.match_info.get("name") if "service" in action or action == "proxy" else None,
        method=request.method,
        path=path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        bytes=extra.bytes_out if extra is not None else response.content_length,
        **(_proxy_fields(extra) if extra is not None else {}),
    )
    return response


def _proxy_fields(stats) -> dict[str, object]:
    fields: dict[str, object] = {"bytes_in": stats.bytes_in, "upstream_status": stats.upstream_status}
    if stats.redactions:
        fields["redactions"] = stats.redactions
    if stats.error:
        fields["error"] = stats.error
    if stats.truncated:
        fields["truncated"] = True
    return fields


MIDDLEWARES = [audit_middleware, errors_middleware, auth_middleware]
