from __future__ import annotations

from aiohttp import web

from ..bodies import json_response
from ..context import ctx
from ..routing import endpoint


@endpoint("health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "unlocked" if ctx(request).store.unlocked else "locked"})


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health, allow_head=False)]
