"""Typed keys for what the middleware and handlers store on a request (aiohttp's ``web.RequestKey``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..proxy.forward import CallStats
from ..tokens import TokenRecord

TOKEN = web.RequestKey("token", TokenRecord)  # the caller's token record (or the one unlock minted)
TOKEN_HEADER = web.RequestKey("token_header", str)  # the header that carried it: never forwarded upstream
CALL_STATS = web.RequestKey("call_stats", CallStats)  # a proxied call's bytes, status and error, for its audit line
AUDIT_EXTRA = web.RequestKey("audit_extra", dict[str, Any])  # a handler's own audit fields
