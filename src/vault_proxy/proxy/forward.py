"""One proxied call: build the upstream request, send it, stream the answer back scrubbed.

The handler (server/handlers/proxy.py) resolves the service and credential and hands a ``CallPlan``
here; this module knows nothing of tokens or the vault file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

from ..injectors import Credential
from ..netguard import AddressNotAllowed, ResolveFailed
from ..outbound.clients import UpstreamClients
from ..outbound.destination import Destination
from ..outbound.http1 import UpstreamResponse
from ..redaction import Scrubber, SecretSet
from ..response_headers import RESPONSE_HEADERS
from .cookies import ServiceCookieJar
from .decoding import SCANNABLE_ACCEPT_ENCODING, BodyDecoder, body_codings
from .errors import (
    AddressRefused,
    BodyTooLarge,
    PlainHttpRefused,
    ProxyError,
    UnscannableEncoding,
    UpstreamFailed,
    UpstreamTimeout,
)
from .headers import caller_response_headers, upstream_request_headers
from .response_scrub import caller_reason, scrub_headers
from .target import rewrite_location

UpstreamAnswer = UpstreamResponse | aiohttp.ClientResponse  # the lean pool's, or aiohttp's behind --http-proxy

MIB = 1024 * 1024
# Bodies up to this size with a known length are read whole and answered with one write.
SMALL_BODY = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class CallPlan:
    service: str
    destination: Destination
    credential: Credential
    secrets: SecretSet
    scrubber: Scrubber  # the secret set's, or a disabled one for a service with redaction off
    homelab: bool
    max_request_bytes: int
    token_header: str | None
    jar: ServiceCookieJar | None = None


@dataclass(slots=True)
class CallStats:
    """Filled in as the call goes; the handler writes it to the audit line."""

    bytes_in: int = 0
    bytes_out: int = 0
    redactions: int = 0
    upstream_status: int | None = None
    origin: str = ""  # the scheme://host:port dialled, for the audit line
    error: str = ""
    truncated: bool = field(default=False)


async def forward(
    request: web.Request, plan: CallPlan, clients: UpstreamClients, stats: CallStats
) -> web.StreamResponse:
    destination = plan.destination
    origin = destination.origin
    stats.origin = destination.origin_text
    if origin.scheme != "https" and not plan.homelab:
        raise PlainHttpRefused()
    if request.content_length is not None and request.content_length > plan.max_request_bytes:
        raise BodyTooLarge(plan.max_request_bytes // MIB)
    headers = upstream_request_headers(
        request.headers,
        token_header=plan.token_header,
        inject=plan.credential.headers,
        accept_encoding=SCANNABLE_ACCEPT_ENCODING if plan.scrubber.enabled else None,
        cookie=plan.jar.header_for(destination.url) if plan.jar is not None else None,
    )
    abort = _RelayAbort()
    body = _capped_body(request, plan.max_request_bytes, stats, abort) if request.body_exists else None
    try:
        if clients.http_proxy:
            await clients.precheck(origin.host, origin.port, plan.homelab)
        async with clients.open(request.method, destination, headers, body, plan.homelab) as upstream:
            stats.upstream_status = upstream.status
            return await _relay(request, upstream, plan, stats, abort)
    except asyncio.CancelledError:
        if not abort.handled():
            raise
        if stats.bytes_in > plan.max_request_bytes:
            raise BodyTooLarge(plan.max_request_bytes // MIB) from None
        raise UpstreamFailed(abort.reason) from None
    except ProxyError:
        raise
    except Exception as exc:
        raise _classify(exc, stats, plan) from None
    finally:
        abort.done = True


class _RelayAbort:
    """Lets a side task (the request-body writer, the caller watch) stop the relay in the handler task.

    The upstream may answer before it has read the request body; if that body then goes over the cap,
    the writer fails quietly while both ends wait for each other: cancelling the relay breaks that.
    """

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self.reason = ""
        self.done = False

    def fire(self, reason: str) -> None:
        if not self.reason and not self.done and self._task is not None:
            self.reason = reason
            self._task.cancel()

    def handled(self) -> bool:
        """In the relay, on CancelledError: True (and the cancel absorbed) when it came from :meth:`fire`."""
        if self.reason and self._task is not None:
            self._task.uncancel()
            return True
        return False


async def _capped_body(request: web.Request, cap: int, stats: CallStats, abort: _RelayAbort) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        stats.bytes_in += len(chunk)
        if stats.bytes_in > cap:
            abort.fire(f"request body over {cap // MIB} MiB")
            raise BodyTooLarge(cap // MIB)
        yield chunk


def _classify(exc: BaseException, stats: CallStats, plan: CallPlan) -> ProxyError:
    """Map a client-side failure to the caller's error; the real cause goes to the audit log."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the refusal may be wrapped by aiohttp
        seen.add(id(current))
        if isinstance(current, (ProxyError,)):
            return current
        if isinstance(current, AddressNotAllowed):
            return AddressRefused(_masked(str(current), plan))
        if isinstance(current, aiohttp.InvalidUrlClientError):  # e.g. legacy numeric hosts like 127.1
            return AddressRefused(_masked(f"{type(current).__name__}: {current}", plan))
        current = current.__cause__ or current.__context__ or getattr(current, "os_error", None)
    if stats.bytes_in > plan.max_request_bytes:
        return BodyTooLarge(plan.max_request_bytes // MIB)
    cause = _masked(f"{type(exc).__name__}: {exc}", plan)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(cause)
    if isinstance(exc, ResolveFailed):
        return UpstreamFailed(cause)
    return UpstreamFailed(cause)


def _masked(text: str, plan: CallPlan) -> str:
    """``text`` with every form of the service's secrets replaced by ``***`` (it goes to the audit log)."""
    return plan.secrets.mask(text)


async def _relay(
    request: web.Request, upstream: UpstreamAnswer, plan: CallPlan, stats: CallStats, abort: _RelayAbort
) -> web.StreamResponse:
    if not 200 <= upstream.status <= 599:  # 1xx are consumed by the client; 0, 99, 600, 999 are not HTTP
        raise UpstreamFailed(f"upstream answered with status {upstream.status}")
    scrubber = plan.scrubber
    if plan.jar is not None:
        plan.jar.capture(upstream.headers.getall("Set-Cookie", ()), upstream.url)
        if scrubber.enabled and len(plan.jar):  # values the jar holds are secrets of the service too
            scrubber = plan.scrubber = plan.secrets.with_cookies(plan.jar.values()).scrubber
    encoding = body_codings(upstream.headers)
    decode = scrubber.enabled and bool(encoding)
    if decode and not BodyDecoder.supports(encoding):
        raise UnscannableEncoding(_masked(encoding, plan))
    headers = caller_response_headers(upstream.headers, keep_encoding=not decode)
    _fix_location(headers, upstream.url, plan)
    reason = caller_reason(upstream.status, upstream.reason, scrubber)
    if scrubber.enabled:
        stats.redactions += scrub_headers(headers, scrubber)
    if request.method == "HEAD" or upstream.status in _NO_BODY_STATUSES:
        if not decode and upstream.content_length is not None:
            headers["Content-Length"] = str(upstream.content_length)
        return web.Response(status=upstream.status, reason=reason, headers=headers)
    streaming = "text/event-stream" in upstream.headers.get("Content-Type", "")
    length = upstream.content_length
    # A coded body is never decoded whole: 2 KB of brotli can expand to gigabytes (the pump decodes
    # in bounded pieces, with backpressure from the caller).
    if length is not None and length <= SMALL_BODY and not streaming and not decode:
        raw = await upstream.read()
        if stats.bytes_in > plan.max_request_bytes:
            raise BodyTooLarge(plan.max_request_bytes // MIB)
        if scrubber.enabled:
            raw, hits = scrubber.scrub(raw)
            stats.redactions += hits
        stats.bytes_out = len(raw)
        return web.Response(status=upstream.status, reason=reason, headers=headers, body=raw)
    if length is not None and not scrubber.enabled:
        headers["Content-Length"] = str(length)
    headers.extend(RESPONSE_HEADERS)  # prepared here, so the server middleware cannot add them later
    response = web.StreamResponse(status=upstream.status, reason=reason, headers=headers)
    await response.prepare(request)
    await _pump(request, upstream, response, plan, stats, abort, BodyDecoder(encoding) if decode else None)
    return response


async def _pump(
    request: web.Request,
    upstream: UpstreamAnswer,
    response: web.StreamResponse,
    plan: CallPlan,
    stats: CallStats,
    abort: _RelayAbort,
    decoder: BodyDecoder | None,
) -> None:
    """Copy the body chunk by chunk, each written as soon as it arrives (SSE works event by event).

    A caller that goes away while we wait for the upstream ends the upstream request within a second
    (an abandoned LLM stream would otherwise keep generating until the upstream's next chunk or the
    idle timeout).
    """
    stream = plan.scrubber.stream() if plan.scrubber.enabled else None  # the jar-widened one, if any
    watch = _CallerWatch(request, abort)
    try:
        async for chunk in upstream.content.iter_any():
            for piece in decoder.feed(chunk) if decoder is not None else (chunk,):
                await _emit(response, stream.feed(piece) if stream is not None else piece, stats)
        for piece in decoder.flush() if decoder is not None else ():
            await _emit(response, stream.feed(piece) if stream is not None else piece, stats)
        if stream is not None:
            await _emit(response, stream.flush(), stats)
        if stats.bytes_in > plan.max_request_bytes:
            # The request body went over the cap after the upstream had started answering.
            raise BodyTooLarge(plan.max_request_bytes // MIB)
    except asyncio.CancelledError:
        if not abort.handled():
            raise
        stats.truncated = True
        stats.error = abort.reason
        if request.transport is not None:
            request.transport.close()
        return
    except Exception as exc:  # noqa: BLE001 - any failure here has one outcome
        # Headers are gone already: cut the connection so the caller sees a truncated body, not a
        # complete-looking one.
        stats.truncated = True
        if isinstance(exc, BodyTooLarge):
            stats.error = f"request body over {plan.max_request_bytes // MIB} MiB after the response started"
        else:
            side = "caller went away" if isinstance(exc, ConnectionResetError) else "upstream body failed"
            stats.error = f"{side}: {type(exc).__name__}"
        if request.transport is not None:
            request.transport.close()
        return
    finally:
        watch.stop()
        if stream is not None:
            stats.redactions += stream.hits
    await response.write_eof()


class _CallerWatch:
    """Once a second, while a response streams: if the caller's connection is gone, abort the relay."""

    INTERVAL = 1.0

    def __init__(self, request: web.Request, abort: _RelayAbort) -> None:
        self._request = request
        self._abort = abort
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self.INTERVAL, self._check)

    def _check(self) -> None:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self._timer = None
            self._abort.fire("caller went away while waiting for the upstream")
            return
        self._timer = self._loop.call_later(self.INTERVAL, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _emit(response: web.StreamResponse, data: bytes, stats: CallStats) -> None:
    if data:
        stats.bytes_out += len(data)
        await response.write(data)


def _fix_location(headers, request_url: URL, plan: CallPlan) -> None:
    location = headers.get("Location")
    if location:
        headers["Location"] = rewrite_location(location, request_url, plan.credential.base_url, plan.service)
