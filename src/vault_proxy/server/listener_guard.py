"""What every listener (TCP, TLS, unix socket) enforces before the app sees a request (SPEC §3).

- **Head timeout**: a connection must deliver its first complete request head within
  ``ListenerTimeouts.head`` seconds of being accepted; a TLS handshake counts against the same
  budget. One timer per connection, armed when it is accepted; nothing runs per request.
- **Idle timeout**: between requests a keep-alive connection may stay idle, or part way into its
  next head, for ``ListenerTimeouts.idle`` seconds (aiohttp's keep-alive timer, restarted after
  each response).
- Neither cuts a request being handled: a slow upload or a long streamed response runs to its end.
- **Malformed requests** (what aiohttp's parser refuses: bare LF, bad header bytes, oversize lines,
  bad chunk framing, non-HTTP bytes) get a fixed JSON 400 and close the connection; the log gets one
  INFO line naming the error class. aiohttp's own answer quotes the offending bytes (a caller's token
  included) in the body and logs them with a traceback at ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..response_headers import RESPONSE_HEADERS
from .listener_timeouts import ListenerTimeouts
from .middleware import error_response

log = logging.getLogger("vault_proxy.server")

MALFORMED = "malformed request"
_STATUS_MESSAGES = {400: MALFORMED, 504: "request timed out"}


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a head deadline and an error answer that quotes nothing."""

    __slots__ = ("_head_deadline", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs) -> None:
        super().__init__(manager, **kwargs)
        # Built by the listener at accept time, before any TLS handshake: the budget starts here.
        self._head_deadline = self._loop.time() + head_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer = self._loop.call_at(self._head_deadline, self._head_timed_out)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        # aiohttp counts a request (or a parse error) as soon as its head is complete.
        if self._request_count == 0 and self.transport is not None:
            log.debug("closed a connection that sent no complete request head in time")
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer when parsing failed (400) or a request escaped the app's own error handling."""
        if status == 400:
            # The exception's text quotes the request bytes: only its class name is logged.
            reason = type(exc).__name__ if exc is not None else "unknown"
            log.info("refused a malformed request from %s (%s)", request.remote or "a unix socket", reason)
        else:
            self.log_exception("error handling a request", exc_info=exc)
        if request.writer.output_size > 0:  # a response has started: the connection is beyond repair
            raise ConnectionError("response already started")
        response = error_response(status, _STATUS_MESSAGES.get(status, "internal error"))
        response.headers.update(RESPONSE_HEADERS)
        response.headers["Connection"] = "close"
        response.force_close()
        return response


def _site_name(sock: socket.socket, tls: bool) -> str:
    scheme = "https" if tls else "http"
    if sock.family == socket.AF_UNIX:
        return f"{scheme}://unix:{sock.getsockname()}:"
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class GuardedSite(web.BaseSite):
    """A listening socket served with ``GuardedRequestHandler`` (aiohttp's ``SockSite``, guarded)."""

    __slots__ = ("_sock", "_timeouts")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        timeouts: ListenerTimeouts,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._sock = sock
        self._timeouts = timeouts

    @property
    def name(self) -> str:
        return _site_name(self._sock, self._ssl_context is not None)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        timeouts = self._timeouts

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server, loop=loop, head_timeout=timeouts.head, keepalive_timeout=timeouts.idle, access_log=None
            )

        self._server = await loop.create_server(
            protocol,
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=timeouts.head if self._ssl_context is not None else None,
        )
