"""``POST /ssh/{name}/exec``: run a command on a stored-key SSH service (SPEC §12)."""

from __future__ import annotations

from aiohttp import web

from ...ssh.errors import SshError
from ...ssh.exec import DEFAULT_TIMEOUT, MAX_TIMEOUT, run_command
from ...ssh.policy import MAX_COMMAND_LEN, command_allowed
from ...vault.models import Service, SshKeyAuth
from ..bodies import json_response, read_json_object
from ..context import ctx
from ..errors import ApiError, BadRequest, Forbidden
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
    audit = request["audit_extra"] = {"service": service.name, "command": command[:AUDIT_COMMAND_CHARS]}
    if not command_allowed(command, auth.ssh_allowed_commands):
        raise Forbidden("command not in allowed list for this service")
    context = ctx(request)
    try:
        conn = await context.ssh.connection(service)
        result = await run_command(conn, command, timeout)
    except SshError as exc:
        audit["error"] = exc.cause
        raise _SshFailure(exc) from None
    finally:
        context.ssh.touch(service.name)
    audit.update(exit_code=result.exit_code, bytes=len(result.stdout) + len(result.stderr),
                 timed_out=result.timed_out or None)  # fmt: skip
    return json_response(result.as_json())


def routes() -> list[web.RouteDef]:
    return [web.post("/ssh/{name}/exec", exec_command)]
