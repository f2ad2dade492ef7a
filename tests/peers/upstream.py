"""A local HTTPS upstream for the proxy integration tests (aiohttp + a trustme CA).

It runs in its own thread and event loop, listens on ``127.0.0.1`` and ``::1`` (same port, HTTPS) and
on ``127.0.0.1`` (another port, plain HTTP, for ``tls_skip_verify`` services), and records every
request it receives, exactly as it arrived on the wire, in ``Upstream.requests``.

Routes (an optional prefix of ``/p/<segment>`` or ``/t/<segment>`` pairs is allowed in front of each,
so a service ``base_url`` can carry a path or a URL token):

``/echo[/...]``            JSON of what arrived; echoes Authorization, x-api-key, the URL token and the
                           header named by ``?h=`` into the body and into ``X-Echo-*`` response headers.
                           ``?pad=N`` adds N bytes of padding, ``?chunked=1`` streams the body in pieces.
``/echo-gzip``, ``/echo-br`` the same, compressed (``Content-Encoding: gzip`` / ``br``).
``/sse?n=5&delay=0.5``     n server-sent events, each flushed, ``delay`` seconds apart.
``/sse-split?h=...``       one event whose echoed secret is split across two writes 0.3 s apart.
``/redirect?to=URL``       302 (or ``?code=``) with ``Location: URL``.
``/set-cookie``            ``?name=&value=`` sets a cookie; ``?delete=1`` sends ``Max-Age=0``;
                           ``?expire=1`` an ``Expires`` in the past.
``/cookies``               the Cookie header it got.
``/big-download?mb=50``    N MiB of pseudo-random bytes (``download_sha256(mb)``) in 64 KiB writes.
``/upload``                reads the body as a stream; returns its length and sha256.
``/hop``                   hop-by-hop, Set-Cookie, CSP/HSTS/frame/CORS headers, for the response rules.
``/status/{code}``         that status with a small text body.
``/hang?m=MARKER``         one SSE event, then nothing; records in ``hang_gone[MARKER]`` the monotonic time
                           it saw the caller's connection close (or gives up after 30 s).
``/answer-early``          answers 200 at once (one line), then reads the request body and reports its size.
``/reset?declared=&send=`` announces ``declared`` bytes, sends ``send`` bytes, then drops the connection.
``/v1/chat/completions``, ``/v1/models``   OpenAI-compatible (streaming included).
``/v1/messages``           Anthropic-compatible (streaming included).
``/__requests``            the records as JSON (not itself recorded).

The LLM routes answer 401 unless the injected credential is one of ``llm_keys``; every route answers
400 when a request carries one of the ``forbidden`` values (the callers' vault tokens).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import random
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import brotli
import httpx
import trustme
from aiohttp import web
from loop_thread import LoopThreadServer
from multidict import CIMultiDict

MIB = 1024 * 1024
WRITE_SIZE = 64 * 1024
# One fixed MiB of pseudo-random bytes; /big-download repeats it.
_BLOCK = random.Random(20000).randbytes(MIB)
_PREFIX = re.compile(r"(?P<prefix>(?:/[pt]/[^/?]+)*)(?P<rest>/[^?]*)")
PORT_MIN, PORT_MAX = 20000, 32767


def download_sha256(mb: int) -> str:
    digest = hashlib.sha256()
    for _ in range(mb):
        digest.update(_BLOCK)
    return digest.hexdigest()


def _free_port_both() -> int:
    """A port in 20000-32767 that binds on 127.0.0.1 and ::1 right now."""
    for _ in range(500):
        port = random.randint(PORT_MIN, PORT_MAX)
        socks = []
        try:
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return port
    raise RuntimeError("no free port in 20000-32767")


@dataclass
class SeenRequest:
    """One request as the upstream received it."""

    method: str
    raw_path: str  # the request-target exactly as on the wire, query included
    path: str
    headers: list[tuple[str, str]]  # in order, duplicates kept
    scheme: str
    local: str  # the listening address that got it
    cookies: dict[str, str] = field(default_factory=dict)
    body_len: int = -1
    body_sha256: str = ""
    leaked: list[str] = field(default_factory=list)  # forbidden values found in path/headers/body
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


SEEN = web.RequestKey("seen", SeenRequest)


class Upstream(LoopThreadServer):
    """The upstream app, its CA, its listeners and what it has seen."""

    label = "test upstream"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.ca = trustme.CA()
        self.ca_path = workdir / "upstream-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        names = ["127.0.0.1", "::1", "localhost", "0.0.0.0", "::ffff:127.0.0.1", "ip6-localhost", socket.gethostname()]
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*dict.fromkeys(names)).configure_cert(self.server_ctx)
        self.server_ctx.sni_callback = self._on_handshake
        self.port = _free_port_both()
        self.http_port = 0
        self.url = f"https://127.0.0.1:{self.port}"
        self.llm_keys: set[str] = set()
        self.forbidden: set[str] = set()
        self.handshakes = 0
        self.hang_gone: dict[str, float] = {}
        self.echo_unknown = False  # True: any path without a route of its own is answered like /echo
        self._requests: list[SeenRequest] = []
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._record_middleware], client_max_size=1024 * MIB)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for host in ("127.0.0.1", "::1"):
            await web.TCPSite(self._runner, host, self.port, ssl_context=self.server_ctx).start()
        for _ in range(50):
            port = random.randint(PORT_MIN, PORT_MAX)
            try:
                await web.TCPSite(self._runner, "127.0.0.1", port).start()
            except OSError:
                continue
            self.http_port = port
            break
        else:
            raise RuntimeError("no free port for the plain-HTTP listener")

    def _on_handshake(self, _sslobj, _server_name, _ctx) -> None:
        with self._lock:
            self.handshakes += 1

    # -- helpers for tests ----------------------------------------------------------------------

    def url_for(self, host: str, path: str = "") -> str:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"https://{host}:{self.port}{path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client that trusts the upstream's CA (for calling it directly)."""
        verify = ssl.create_default_context(cafile=str(self.ca_path))
        return httpx.Client(verify=verify, timeout=30.0, **kwargs)

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._requests)

    def mark(self) -> int:
        with self._lock:
            return len(self._requests)

    def since(self, mark: int) -> list[SeenRequest]:
        with self._lock:
            return list(self._requests[mark:])

    def matching(self, marker: str) -> list[SeenRequest]:
        """Requests whose raw path contains ``marker`` (tests put a unique marker in the path or query)."""
        return [r for r in self.requests if marker in r.raw_path]

    def only(self, marker: str) -> SeenRequest:
        found = self.matching(marker)
        assert len(found) == 1, f"expected 1 upstream request with {marker!r}, got {len(found)}"
        return found[0]

    # -- recording ------------------------------------------------------------------------------

    @web.middleware
    async def _record_middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path == "/__requests":
            return await handler(request)
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        seen = SeenRequest(
            method=request.method,
            raw_path=request.raw_path,
            path=request.path,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
            scheme=request.scheme,
            local=str(sock[0]) if sock else "",
            cookies=dict(request.cookies),
        )
        request[SEEN] = seen
        haystack = "\n".join([seen.raw_path, *(f"{k}: {v}" for k, v in seen.headers)])
        if not re.fullmatch(r"/upload(?:/.*)?|/answer-early", _route_of(request)[0]):  # these stream the body
            body = await request.read()
            seen.body_len, seen.body_sha256 = len(body), hashlib.sha256(body).hexdigest()
            haystack += "\n" + body.decode("latin-1")
        seen.leaked = sorted(tok for tok in self.forbidden if tok in haystack)
        with self._lock:
            self._requests.append(seen)
        if seen.leaked:
            return web.json_response({"error": "a vault token reached the upstream"}, status=400)
        return await handler(request)

    # -- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        rest, prefix = _route_of(request)
        if rest == "/__requests":
            return web.json_response([asdict(r) for r in self.requests])
        for pattern, handler in _ROUTES:
            match = pattern.fullmatch(rest)
            if match:
                return await handler(self, request, prefix, *match.groups())
        if self.echo_unknown:
            return await echo(self, request, prefix)
        return web.json_response({"error": f"no route {rest}"}, status=404)


def _route_of(request: web.Request) -> tuple[str, str]:
    """(route part, prefix part) of the raw path."""
    match = _PREFIX.match(request.raw_path)
    if match is None:
        return request.raw_path, ""
    return match.group("rest"), match.group("prefix")


def _url_token(request: web.Request, prefix: str) -> str | None:
    for part in re.findall(r"/t/([^/?]+)", prefix):
        return part
    return request.query.get("token") or request.query.get("key")


def _echo_values(up: Upstream, request: web.Request, prefix: str) -> dict[str, str]:
    """Credential-ish values the upstream reflects back (what a chatty or hostile API might do)."""
    values: dict[str, str] = {}
    auth = request.headers.get("Authorization")
    if auth:
        values["Authorization"] = auth
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                values["Basic-Decoded"] = base64.b64decode(rest).decode("latin-1")
    if request.headers.get("x-api-key"):
        values["Api-Key"] = request.headers["x-api-key"]
    token = _url_token(request, prefix)
    if token:
        values["Token"] = token
    named = request.query.get("h")
    if named and request.headers.get(named):
        values["Named"] = request.headers[named]
    return values


async def _echo_body(up: Upstream, request: web.Request, prefix: str) -> tuple[bytes, CIMultiDict[str]]:
    seen = request[SEEN]
    body = await request.read()
    echoed = _echo_values(up, request, prefix)
    text: str | None
    try:
        text = body.decode("utf-8") if len(body) <= 64 * 1024 else None
    except UnicodeDecodeError:
        text = None
    doc = {
        "method": request.method,
        "raw_path": request.raw_path,
        "path": request.path,
        "query_string": request.query_string,
        "headers": seen.headers,
        "cookies": seen.cookies,
        "body_len": seen.body_len,
        "body_sha256": seen.body_sha256,
        "body": text,
        "echo": echoed,
    }
    pad = int(request.query.get("pad", "0"))
    if pad:
        doc["pad"] = "p" * pad
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    for name, value in echoed.items():
        headers[f"X-Echo-{name}"] = value
    return json.dumps(doc).encode(), headers


async def _send(request: web.Request, data: bytes, headers: CIMultiDict[str]) -> web.StreamResponse:
    """Send ``data`` whole, or (``?chunked=1``) in three flushed pieces without a Content-Length."""
    if request.query.get("chunked") != "1":
        return web.Response(body=data, headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    third = max(1, len(data) // 3)
    for start in range(0, len(data), third):
        await response.write(data[start : start + third])
        await asyncio.sleep(0.02)
    await response.write_eof()
    return response


async def echo(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    data, headers = await _echo_body(up, request, prefix)
    return await _send(request, data, headers)


async def echo_gzip(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    data, headers = await _echo_body(up, request, prefix)
    headers["Content-Encoding"] = "gzip"
    return await _send(request, gzip.compress(data), headers)


async def echo_br(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    data, headers = await _echo_body(up, request, prefix)
    headers["Content-Encoding"] = "br"
    return await _send(request, brotli.compress(data), headers)


async def sse(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    count = min(int(request.query.get("n", "5")), 100)
    delay = min(float(request.query.get("delay", "0.5")), 5.0)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for i in range(count):
        if i:
            await asyncio.sleep(delay)
        await response.write(f"id: {i}\nevent: tick\ndata: {json.dumps({'i': i})}\n\n".encode())
    await response.write_eof()
    return response


async def hang(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"event: first\ndata: {}\n\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if request.transport is None or request.transport.is_closing():
            up.hang_gone[request.query.get("m", "")] = time.monotonic()
            break
        await asyncio.sleep(0.05)
    return response


async def answer_early(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(b"answering before the body is read\n")
    size = 0
    with contextlib.suppress(Exception):  # the vault may cut the request short
        while chunk := await request.content.readany():
            size += len(chunk)
        await response.write(f"body bytes: {size}\n".encode())
        await response.write_eof()
    return response


async def sse_split(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    """The echoed secret (last word of Authorization, or of the header named by ``?h=``) in two writes."""
    name = request.query.get("h", "Authorization")
    value = request.headers.get(name, "")
    secret = value.split()[-1] if value.split() else ""
    delay = min(float(request.query.get("delay", "0.3")), 5.0)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    cut = len(secret) // 2
    await response.write(b'event: echo\ndata: {"secret": "' + secret[:cut].encode())
    await asyncio.sleep(delay)
    await response.write(secret[cut:].encode() + b'"}\n\n')
    await asyncio.sleep(delay)
    await response.write(b"event: done\ndata: {}\n\n")
    await response.write_eof()
    return response


async def redirect(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    code = int(request.query.get("code", "302"))
    return web.Response(status=code, headers={"Location": request.query.get("to", "/")}, text="moved")


async def set_cookie(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    name = request.query.get("name", "session")
    value = request.query.get("value", "cookie-value")
    if request.query.get("delete") == "1":
        header = f"{name}=; Path=/; Max-Age=0"
    elif request.query.get("expire") == "1":
        header = f"{name}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    else:
        header = f"{name}={value}; Path=/; HttpOnly; Secure"
    response = web.json_response({"set": name})
    response.headers.add("Set-Cookie", header)
    return response


async def cookies(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    return web.json_response({"cookie": request.headers.get("Cookie"), "cookies": dict(request.cookies)})


async def big_download(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    mb = min(int(request.query.get("mb", "50")), 512)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = mb * MIB
    await response.prepare(request)
    for _ in range(mb):
        for start in range(0, MIB, WRITE_SIZE):
            await response.write(_BLOCK[start : start + WRITE_SIZE])
    await response.write_eof()
    return response


async def upload(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    seen = request[SEEN]
    digest, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(WRITE_SIZE):
        digest.update(chunk)
        length += len(chunk)
    seen.body_len, seen.body_sha256 = length, digest.hexdigest()
    return web.json_response({"length": length, "sha256": seen.body_sha256})


# Response headers a proxy must not pass on as they are (name, value); /hop sends all of them.
HOP_RESPONSE_HEADERS = [
    ("Connection", "X-Hop-Named"),
    ("X-Hop-Named", "named-by-connection"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Authenticate", 'Basic realm="upstream"'),
    ("Proxy-Connection", "keep-alive"),
    ("Set-Cookie", "hopcookie=one; Path=/"),
    ("Set-Cookie", "hopcookie2=two; Path=/; HttpOnly"),
    ("Content-Security-Policy", "default-src *"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Credentials", "true"),
    ("X-Content-Type-Options", "sniff-please"),
    ("Cache-Control", "public, max-age=600"),
    ("Referrer-Policy", "unsafe-url"),
    ("X-Vault-Error", "1"),
]
KEPT_RESPONSE_HEADERS = [("X-Kept", "kept-value"), ("X-Request-Id", "req-123"), ("ETag", '"v1"')]


async def hop(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    headers: CIMultiDict[str] = CIMultiDict(HOP_RESPONSE_HEADERS + KEPT_RESPONSE_HEADERS)
    return web.json_response({"ok": True}, headers=headers)


async def status(up: Upstream, request: web.Request, prefix: str, code: str) -> web.StreamResponse:
    value = int(code)
    headers = {"X-Upstream-Status": code}
    if value in (204, 304) or value < 200:
        return web.Response(status=value, headers=headers)
    return web.Response(status=value, text=f"upstream status {code}", headers=headers)


async def reset(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    declared = int(request.query.get("declared", str(MIB)))
    send = int(request.query.get("send", "1000"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = declared
    await response.prepare(request)
    await response.write(b"r" * send)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response


# -- LLM-compatible routes --------------------------------------------------------------------------


def _openai_denied(up: Upstream, request: web.Request) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in up.llm_keys:
        error = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
        return web.json_response({"error": error}, status=401)
    return None


def _anthropic_denied(up: Upstream, request: web.Request) -> web.Response | None:
    if request.headers.get("x-api-key", "") not in up.llm_keys or request.headers.get("Authorization"):
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return web.json_response({"type": "error", "error": error}, status=401)
    if not request.headers.get("anthropic-version"):
        error = {"type": "invalid_request_error", "message": "anthropic-version header is required"}
        return web.json_response({"type": "error", "error": error}, status=400)
    return None


def _last_text(messages: list) -> str:
    for message in reversed(messages or []):
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _sse_line(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def chat_completions(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    denied = _openai_denied(up, request)
    if denied is not None:
        return denied
    body = await request.json()
    model = body.get("model", "gpt-test")
    reply = f"echo: {_last_text(body.get('messages', []))}"
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
    usage = {"prompt_tokens": 7, "completion_tokens": len(reply.split()), "total_tokens": 7 + len(reply.split())}
    if not body.get("stream"):
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop",
            "logprobs": None,
        }
        doc = {"id": ident, "object": "chat.completion", "created": created, "model": model, "choices": [choice]}
        return web.json_response({**doc, "usage": usage})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    await response.write(b"data: " + json.dumps({**base, "choices": [first]}).encode() + b"\n\n")
    for word in reply.split(" "):
        piece = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
        await response.write(b"data: " + json.dumps({**base, "choices": [piece]}).encode() + b"\n\n")
        await asyncio.sleep(0.01)
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    await response.write(b"data: " + json.dumps({**base, "choices": [last]}).encode() + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    denied = _openai_denied(up, request)
    if denied is not None:
        return denied
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "vault-tests"} for name in ("gpt-test", "gpt-other")
    ]
    return web.json_response({"object": "list", "data": data})


async def messages(up: Upstream, request: web.Request, prefix: str) -> web.StreamResponse:
    denied = _anthropic_denied(up, request)
    if denied is not None:
        return denied
    body = await request.json()
    model = body.get("model", "claude-test")
    reply = f"echo: {_last_text(body.get('messages', []))}"
    ident = f"msg_{uuid.uuid4().hex[:12]}"
    message = {"id": ident, "type": "message", "role": "assistant", "model": model, "stop_sequence": None}
    if not body.get("stream"):
        doc = {**message, "content": [{"type": "text", "text": reply}], "stop_reason": "end_turn"}
        return web.json_response({**doc, "usage": {"input_tokens": 7, "output_tokens": len(reply.split())}})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 7, "output_tokens": 1}}
    await response.write(_sse_line({"type": "message_start", "message": start}, "message_start"))
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    await response.write(_sse_line(block, "content_block_start"))
    await response.write(_sse_line({"type": "ping"}, "ping"))
    for word in reply.split(" "):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word + " "}}
        await response.write(_sse_line(delta, "content_block_delta"))
        await asyncio.sleep(0.01)
    await response.write(_sse_line({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": len(reply.split())},
    }
    await response.write(_sse_line(final, "message_delta"))
    await response.write(_sse_line({"type": "message_stop"}, "message_stop"))
    await response.write_eof()
    return response


_ROUTES = [
    (re.compile(r"/echo(?:/.*)?"), echo),
    (re.compile(r"/echo-gzip(?:/.*)?"), echo_gzip),
    (re.compile(r"/echo-br(?:/.*)?"), echo_br),
    (re.compile(r"/sse"), sse),
    (re.compile(r"/sse-split"), sse_split),
    (re.compile(r"/hang"), hang),
    (re.compile(r"/answer-early"), answer_early),
    (re.compile(r"/redirect(?:/.*)?"), redirect),
    (re.compile(r"/set-cookie"), set_cookie),
    (re.compile(r"/cookies"), cookies),
    (re.compile(r"/big-download"), big_download),
    (re.compile(r"/upload(?:/.*)?"), upload),
    (re.compile(r"/hop"), hop),
    (re.compile(r"/status/(\d{3})"), status),
    (re.compile(r"/reset"), reset),
    (re.compile(r"/v1/chat/completions"), chat_completions),
    (re.compile(r"/v1/models"), models),
    (re.compile(r"/v1/messages"), messages),
]
