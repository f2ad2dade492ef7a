"""Reading request bodies with the size caps of the HTTP conventions."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..vault.validation import describe
from .errors import BadRequest, PayloadTooLarge

Model = TypeVar("Model", bound=BaseModel)

MAX_JSON_BYTES = 1024 * 1024


async def read_json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 413 beyond 1 MiB, 400 when it is not a JSON object."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise PayloadTooLarge("request body too large (max 1 MiB)")
    raw = await _read_capped(request, MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge("request body too large (max 1 MiB)")
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("request body must be a JSON object")
    try:
        value = json.loads(raw)
        # A "\ud800" escape decodes to a lone surrogate, which no file name, path or command can
        # carry further (it would fail deep inside SSH or the vault file): refused here, once.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):  # incl. JSONDecodeError and int-digit limits
        raise BadRequest("invalid JSON body") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def parse_body(model: type[Model], body: dict[str, Any]) -> Model:
    """A JSON object as a request model, type-strict (SPEC §3); 400 naming the first bad or missing field."""
    try:
        return model.model_validate(body, strict=True)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first ``limit`` bytes (``read(n)`` alone returns the first segment only)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
