"""Token creation, listing and revocation (admin only)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ...durations import parse_duration
from ...tokens import AmbiguousPrefixError, TokenNotFoundError
from ...vault.models import validate_service_name
from ..bodies import json_response, parse_body, read_json_object
from ..context import ctx
from ..errors import BadRequest, NotFound
from ..routing import endpoint

MAX_TOKEN_NAME = 128
MAX_TTL_SECONDS = 366 * 86400


class TokenRequest(BaseModel):
    """``POST /tokens`` body (SPEC §5): ``scope`` is required; the rest restricts the token."""

    model_config = ConfigDict(extra="ignore", strict=True)

    scope: Literal["admin", "proxy"]
    ttl: str | int | float | None = None
    services: list[str] | None = None
    name: str | None = None


@endpoint("token.list", "admin")
async def list_tokens(request: web.Request) -> web.Response:
    return json_response([record.public() for record in ctx(request).tokens.list()])


@endpoint("token.create", "admin")
async def create_token(request: web.Request) -> web.Response:
    context = ctx(request)
    body = parse_body(TokenRequest, await read_json_object(request, allow_empty=True))
    ttl = _ttl(body.ttl)
    services = _services(body.services, body.scope)
    name = body.name or ""
    if len(name) > MAX_TOKEN_NAME or not name.isprintable():
        raise BadRequest(f"name must be a printable string of at most {MAX_TOKEN_NAME} characters")
    token, record = context.tokens.mint(body.scope, ttl=ttl, services=services, name=name)
    return json_response(context.tokens.token_object(token, record), status=201)


def _ttl(value: str | float | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        raise BadRequest(f"ttl: {exc}") from None
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise BadRequest("ttl must be positive and at most 366d")
    return seconds


def _services(value: list[str] | None, scope: str) -> list[str] | None:
    if value is None:
        return None
    if scope != "proxy":
        raise BadRequest("services can only restrict a proxy token")
    if not value:
        raise BadRequest("services must be a non-empty list of service names")
    try:
        return sorted({validate_service_name(v) for v in value})
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


@endpoint("token.revoke", "admin", audit_template=True)
async def revoke_token(request: web.Request) -> web.Response:
    context = ctx(request)
    try:
        record = context.tokens.revoke(request.match_info["token_id"])
    except TokenNotFoundError:
        raise NotFound("token not found") from None
    except (AmbiguousPrefixError, ValueError) as exc:
        raise BadRequest(str(exc)) from None
    context.sessions.close_owner(record.digest)  # its TCP sessions, pending and active, end with it
    return json_response({"status": "revoked"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tokens", list_tokens, allow_head=False),
        web.post("/tokens", create_token),
        web.delete("/tokens/{token_id}", revoke_token),
    ]
