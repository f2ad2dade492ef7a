"""``POST /ssh/{name}/exec``: run a command on a stored-key SSH service (SPEC §12)."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import AsyncIterator

from aiohttp import web

from ...response_headers import RESPONSE_HEADERS
from ...ssh.errors import SshBusy, SshError, channel_errors
from ...ssh.exec import DEFAULT_TIMEOUT, MAX_TIMEOUT, run_command
from ...ssh.paths import PathRefused, normalised
from ...ssh.policy import MAX_COMMAND_LEN, command_allowed
from ...ssh.shell import run_shell
from ...ssh.transfer import CHUNK, download, download_size, resolve_download
from ...ssh.upload import prepare_target, write_replacing
from ...ssh.upload_rules import NO_UPLOADS, check_upload_mode, check_upload_path, uploads_allowed
from ...vault.models import Service, SshKeyAuth
from ..bodies import json_response, read_json_object
from ..context import AppContext, ctx
from ..errors import ApiError, BadRequest, Forbidden
from ..request_keys import AUDIT_EXTRA
from ..routing import endpoint
from .services import visible_service

AUDIT_COMMAND_CHARS = 200


class _SshFailure(ApiError):
    def __init__(self, error: SshError) -> None:
        super().__init__(error.message)
        self.status = error.status


def ssh_service(request: web.Request) -> tuple[Service, SshKeyAuth]:
    service = visible_service(request, request.match_info["name"])
    if not isinstance(service.auth, SshKeyAuth):
        raise BadRequest(f'service "{service.name}" uses {service.auth.type} auth, not ssh_key')
    return service, service.auth


def _timeout(body: dict) -> float:
    value = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be a number of seconds, more than 0 and at most {int(MAX_TIMEOUT)}")
    return float(value)


@endpoint("ssh.exec", "proxy")
async def exec_command(request: web.Request) -> web.Response:
    service, auth = ssh_service(request)
    body = await read_json_object(request)
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise BadRequest("command is required (a non-empty string)")
    if len(command) > MAX_COMMAND_LEN:
        raise BadRequest(f"command too long (max {MAX_COMMAND_LEN} characters)")
    timeout = _timeout(body)
    audit = request[AUDIT_EXTRA] = {"service": service.name, "command": command[:AUDIT_COMMAND_CHARS]}
    if not command_allowed(command, auth.ssh_allowed_commands):
        raise Forbidden("command not in allowed list for this service")
    context = ctx(request)
    try:
        conn = await context.ssh.connection(service)
        with channel_errors():
            result = await run_command(conn, command, timeout)
    except SshError as exc:
        audit["error"] = exc.cause
        raise _SshFailure(exc) from None
    finally:
        context.ssh.touch(service.name)
    audit.update(exit_code=result.exit_code, bytes=len(result.stdout) + len(result.stderr),
                 timed_out=result.timed_out or None)  # fmt: skip
    return json_response(result.as_json())


@contextlib.asynccontextmanager
async def _ssh_errors(context: AppContext, service: Service, audit: dict) -> AsyncIterator[None]:
    """Path refusals → 400; SSH failures → their status, cause to the audit line; idle clock restarted."""
    try:
        with channel_errors():
            yield
    except PathRefused as exc:
        raise BadRequest(str(exc)) from None
    except SshError as exc:
        audit["error"] = exc.cause
        raise _SshFailure(exc) from None
    finally:
        context.ssh.touch(service.name)


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise BadRequest("mode must be octal, e.g. 0644") from None
    if not 0 <= mode <= 0o7777:
        raise BadRequest("mode must be between 0000 and 7777")
    try:
        return check_upload_mode(mode)
    except PathRefused as exc:
        raise BadRequest(str(exc)) from None


async def _field(part) -> str:
    return (await part.read(decode=True)).decode("utf-8", "replace")[:4096]


@endpoint("ssh.upload", "proxy")
async def upload_file(request: web.Request) -> web.Response:
    """Multipart ``remote_path``, ``mode`` (octal, 0644) and then ``file``, streamed to the host over SFTP.

    What an upload may not touch, and how it is written, is in ``ssh/upload_rules.py`` and ``ssh/upload.py``.
    """
    service, auth = ssh_service(request)
    audit = request[AUDIT_EXTRA] = {"service": service.name}
    if not uploads_allowed(auth.ssh_allowed_commands, auth.ssh_allowed_paths):
        raise Forbidden(NO_UPLOADS)
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send multipart/form-data with remote_path, mode and file")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    context = ctx(request)
    while (part := await reader.next()) is not None:
        if part.name != "file":
            fields[part.name or ""] = await _field(part)
            continue
        if "remote_path" not in fields:
            raise BadRequest("remote_path must come before file in the form")
        mode = _mode(fields.get("mode", "0644"))
        audit["remote_path"] = fields["remote_path"][:200]

        async def chunks(part=part):
            while chunk := await part.read_chunk(CHUNK):
                yield chunk

        async with _ssh_errors(context, service, audit):
            check_upload_path(normalised(fields["remote_path"]), auth.ssh_allowed_paths)  # before connecting
            conn = await context.ssh.connection(service)
            async with conn.start_sftp_client() as sftp:
                path = await prepare_target(sftp, fields["remote_path"], auth.ssh_allowed_paths)
                size = await write_replacing(sftp, path, chunks(), mode)
        audit["bytes"] = size
        # ``ok`` and ``bytes`` are what the Go tool's clients read; ``size`` and ``mode`` are ours.
        return json_response({"ok": True, "bytes": size, "remote_path": path, "size": size, "mode": f"{mode:04o}"})
    raise BadRequest("file is required")


@endpoint("ssh.download", "proxy")
async def download_file(request: web.Request) -> web.StreamResponse:
    """``{"remote_path"}`` → the file's bytes, streamed from SFTP as they are read."""
    service, auth = ssh_service(request)
    body = await read_json_object(request)
    context = ctx(request)
    audit = request[AUDIT_EXTRA] = {"service": service.name, "remote_path": str(body.get("remote_path"))[:200]}
    async with _ssh_errors(context, service, audit):
        conn = await context.ssh.connection(service)
        async with conn.start_sftp_client() as sftp:
            path = await resolve_download(sftp, body.get("remote_path"), auth.ssh_allowed_paths)
            size = await download_size(sftp, path)
            response = web.StreamResponse(headers={**RESPONSE_HEADERS, "Content-Type": "application/octet-stream",
                                                   "Content-Disposition": _attachment(path)})  # fmt: skip
            response.content_length = size
            await response.prepare(request)
            sent = 0
            try:
                async for chunk in download(sftp, path):
                    sent += len(chunk)
                    await response.write(chunk)
            except Exception as exc:  # noqa: BLE001 - headers are out: cut the connection, never fake an end
                audit.update(bytes=sent, error=f"download interrupted: {type(exc).__name__}", truncated=True)
                if request.transport is not None:
                    request.transport.close()
                return response
    audit["bytes"] = sent
    await response.write_eof()
    return response


def _attachment(path: str) -> str:
    name = posixpath.basename(path).replace('"', "").replace("\\", "") or "download"
    return f'attachment; filename="{name}"'


def _term_size(request: web.Request) -> tuple[int, int]:
    try:
        cols, rows = int(request.query.get("cols", "80")), int(request.query.get("rows", "24"))
    except ValueError:
        raise BadRequest("cols and rows must be integers") from None
    if not (0 < cols <= 1000 and 0 < rows <= 1000):
        raise BadRequest("cols and rows must be between 1 and 1000")
    return cols, rows


@endpoint("ssh.session", "proxy")
async def shell_session(request: web.Request) -> web.StreamResponse:
    """``GET /ssh/{name}/session?cols=&rows=``: a WebSocket to a PTY shell on the host."""
    service, auth = ssh_service(request)
    if auth.ssh_allowed_commands or auth.ssh_allowed_paths:
        # A shell runs anything: it would bypass the allowlist the operator set for this service.
        raise Forbidden("interactive shell not allowed: this service restricts commands or paths")
    cols, rows = _term_size(request)
    context = ctx(request)
    audit = request[AUDIT_EXTRA] = {"service": service.name}
    try:
        conn = await context.ssh.connection(service)  # before the upgrade, so failures are plain JSON errors
    except SshError as exc:
        audit["error"] = exc.cause
        raise _SshFailure(exc) from None
    ws = web.WebSocketResponse(heartbeat=30)
    ws.headers.update(RESPONSE_HEADERS)
    await ws.prepare(request)
    try:
        with channel_errors():
            audit["bytes"] = await run_shell(ws, conn, cols, rows)
    except SshBusy as exc:  # the socket is a WebSocket by now: 1013 is "try again later"
        audit["error"] = exc.cause
        await ws.close(code=1013, message=b"ssh server busy")
    finally:
        context.ssh.touch(service.name)
    return ws


def routes() -> list[web.RouteDef]:
    return [
        web.post("/ssh/{name}/exec", exec_command),
        web.post("/ssh/{name}/upload", upload_file),
        web.post("/ssh/{name}/download", download_file),
        web.get("/ssh/{name}/session", shell_session, allow_head=False),
    ]
