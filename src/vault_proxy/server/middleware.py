"""Cross-cutting request handling: security headers, JSON errors, caller auth, the audit line."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from ..proxy.forward import CallStats
from ..response_headers import RESPONSE_HEADERS
from ..tokens import TokenError, TokenRecord
from .bodies import json_response
from .context import CONTEXT, AppContext
from .errors import ApiError, Forbidden, Unauthorized, VaultLocked
from .request_keys import AUDIT_EXTRA, CALL_STATS, TOKEN, TOKEN_HEADER
from .routing import Endpoint

log = logging.getLogger("vault_proxy.server")

_HTTP_MESSAGES = {404: "not found", 405: "method not allowed", 413: "request body too large"}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = json_response({"error": message}, status=status)
    response.headers["X-Vault-Error"] = "1"
    response.headers.update(headers or {})
    return response


def _error_from(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error response for anything a handler raised (a traceback only ever goes to the log)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.headers)
    if isinstance(exc, web.HTTPException):
        message = _HTTP_MESSAGES.get(exc.status, exc.reason.lower())
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, message, headers)
    if isinstance(exc, BadHttpMessage):  # e.g. a multipart part with a malformed header: the client's input
        return error_response(400, "malformed request body")
    log.error("unexpected error handling %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal error")


def _refused_target() -> web.Response:
    response = error_response(400, "request target must be a path (origin-form), not an absolute URL")
    response.headers.update(RESPONSE_HEADERS)
    return response


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


def _authenticate(request: web.Request, context: AppContext, scope: str) -> TokenRecord:
    """Check the caller's token against the route's scope; raises 401/403/423 as ApiError."""
    token, header = _caller_token(request)
    if not token:
        raise Unauthorized("authorization required")
    try:
        record = context.tokens.authenticate(token)  # lock revokes every token: 401 once locked
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    if not context.store.unlocked:
        raise VaultLocked()
    if scope == "admin" and not record.is_admin:
        raise Forbidden("admin scope required")
    request[TOKEN] = record
    request[TOKEN_HEADER] = header
    return record


@web.middleware
async def vault_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Caller auth, JSON errors and the audit line, in one layer (it runs on every proxied call)."""
    if request.raw_path[:1] != "/":  # absolute-form (or any non-origin-form) target: refused on every route
        return _refused_target()
    meta: Endpoint | None = getattr(request.match_info.handler, "vault_endpoint", None)
    context = request.app[CONTEXT]
    started = time.perf_counter()
    record = None
    try:
        if meta is not None and meta.scope is not None:
            record = _authenticate(request, context, meta.scope)
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(RESPONSE_HEADERS)
            raise
        response = _error_from(request, exc)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
        response = _error_from(request, exc)
    if not response.prepared:
        response.headers.update(RESPONSE_HEADERS)  # replaces any value a handler set
    if meta is not None and meta.audited:
        stats = request.get(CALL_STATS) if meta.action == "proxy" else None
        if stats is not None and record is not None:  # the hot path: one preformatted line
            context.audit.proxy_call(
                record.id_prefix[:8], record.scope, request.match_info["name"], request.method, request.path,
                response.status, time.perf_counter() - started, stats,
            )  # fmt: skip
        else:  # e.g. unlock sets the token it minted
            record = record or request.get(TOKEN)
            context.audit.write(_audit_entry(request, meta, record, response, started, stats))
    return response


def _audit_entry(
    request: web.Request,
    meta: Endpoint,
    record: TokenRecord | None,
    response: web.StreamResponse,
    started: float,
    stats: CallStats | None,
) -> dict[str, object]:
    entry: dict[str, object] = {"action": meta.action}
    if record is not None:
        entry["token"] = record.id_prefix[:8]
        entry["scope"] = record.scope
    if meta.action == "proxy" or "service" in meta.action:
        name = request.match_info.get("name")
        if name:
            entry["service"] = name
    entry["method"] = request.method
    resource = request.match_info.route.resource
    entry["path"] = resource.canonical if meta.audit_template and resource is not None else request.path
    entry["status"] = response.status
    entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if stats is None:
        if response.content_length is not None:
            entry["bytes"] = response.content_length
        extra = request.get(AUDIT_EXTRA)  # a handler's own fields (e.g. the SSH command and exit code)
        if extra:
            entry.update((key, value) for key, value in extra.items() if value is not None)
        return entry
    entry["bytes"] = stats.bytes_out
    entry["bytes_in"] = stats.bytes_in
    if stats.origin:
        entry["upstream"] = stats.origin
    if stats.upstream_status is not None:
        entry["upstream_status"] = stats.upstream_status
    if stats.redactions:
        entry["redactions"] = stats.redactions
    if stats.error:
        entry["error"] = stats.error
    if stats.truncated:
        entry["truncated"] = True
    return entry


MIDDLEWARES = [vault_middleware]
