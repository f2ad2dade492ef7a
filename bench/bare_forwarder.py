#!/usr/bin/env python3
"""The floor: a bare one-process aiohttp forwarder that only swaps the Authorization header.

Usage: bare_forwarder.py PORT UPSTREAM_BASE_URL TOKEN   (listens on 127.0.0.1:PORT)
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

DROP = frozenset({"host", "authorization", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"})
DROP_BACK = frozenset({"connection", "keep-alive", "transfer-encoding"})


def make_app(upstream: str, token: str) -> web.Application:
    auth = f"Bearer {token}"

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
        headers["Authorization"] = auth
        session: aiohttp.ClientSession = request.app["session"]
        data = request.content if request.body_exists else None
        async with session.request(request.method, upstream + request.raw_path, headers=headers, data=data) as up:
            back = {k: v for k, v in up.headers.items() if k.lower() not in DROP_BACK}
            response = web.StreamResponse(status=up.status, reason=up.reason, headers=back)
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def session_ctx(app: web.Application):  # one pooled client session for the process's life
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


if __name__ == "__main__":
    port, base, secret = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
    web.run_app(make_app(base, secret), host="127.0.0.1", port=port, access_log=None, print=None,
                loop=uvloop.new_event_loop())  # fmt: skip
