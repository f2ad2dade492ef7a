"""The vault's HTTP API as plain request descriptions, shared by the sync and async clients.

Each function returns a :class:`Call` (method, path, body); ``decode`` turns the answer into a
result or a :class:`VaultError`. No I/O happens here, so one table serves both clients.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vault_proxy.client.errors import VaultError
from vault_proxy.client.models import ExecResult, FileInfo, ServiceInfo, Session, TokenInfo

if TYPE_CHECKING:
    import httpx

VAULT_ERROR_HEADER = "X-Vault-Error"


@dataclass(frozen=True)
class Call:
    """One request to the vault's own API."""

    method: str
    path: str
    json: Any = None
    files: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    auth: bool = True  # send the caller's token
    raw: bool = False  # result is the body bytes, not JSON
    result: Callable[[Any], Any] | None = None  # JSON object -> typed result (applied to each item of a list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` (headers excluded)."""
        out: dict[str, Any] = dict(self.kwargs)
        if self.json is not None:
            out["json"] = self.json
        if self.files is not None:
            out["files"] = self.files
        if self.data is not None:
            out["data"] = self.data
        return out


def segment(value: str) -> str:
    """Percent-encode one path segment (names may hold spaces, ``?``, ``#``, ``%``)."""
    if not value:
        raise ValueError("name must not be empty")
    return quote(value, safe="")


def message_from_body(status: int, reason: str, content: bytes) -> str:
    """The ``error`` field of a vault error body, or a short fallback."""
    try:
        body = jsonlib.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    text = content.decode("utf-8", "replace").strip()
    if text and len(text) <= 200 and "\n" not in text:
        return text
    return f"HTTP {status} {reason}".strip()


def error_message(response: httpx.Response) -> str:
    """The ``error`` field of a vault error body (already read), or a short fallback."""
    return message_from_body(response.status_code, response.reason_phrase, response.content)


def raise_for_status(response: httpx.Response) -> None:
    """Raise :class:`VaultError` for any non-2xx answer (the body must already be read)."""
    if not 200 <= response.status_code < 300:
        raise VaultError(response.status_code, error_message(response))


def is_vault_error(response: httpx.Response) -> bool:
    """True when a proxied answer was produced by the vault, not by the upstream."""
    return response.headers.get(VAULT_ERROR_HEADER, "").strip() == "1"


def decode(call: Call, response: httpx.Response) -> Any:
    """The result of ``call``: typed JSON (or bytes for raw calls); raises on vault errors."""
    return decode_body(call, response.status_code, response.reason_phrase, response.content)


def decode_body(call: Call, status: int, reason: str, content: bytes) -> Any:
    """:func:`decode` for any HTTP client: status line parts and the whole body."""
    if not 200 <= status < 300:
        raise VaultError(status, message_from_body(status, reason, content))
    if call.raw:
        return content
    if not content:
        return None
    data = jsonlib.loads(content)
    if call.result is None:
        return data
    if isinstance(data, list):
        return [call.result(item) for item in data]
    return call.result(data)


def format_ttl(ttl: str | int | float | timedelta) -> str:
    """``"2h"`` stays as is; seconds or a timedelta become ``"<n>s"``."""
    if isinstance(ttl, timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, int | float):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return f"{int(ttl)}s"
    return ttl


# --- health, unlock, lock -------------------------------------------------------------------


def health() -> Call:
    return Call("GET", "/health", auth=False)


def token_health() -> Call:
    return Call("GET", "/health/tokens")


def oauth2_authorize(
    client_secret_file: str,
    service_name: str,
    base_url: str,
    scopes: Sequence[str] = (),
    redirect_uri: str | None = None,
    overwrite: bool = False,
) -> Call:
    body: dict[str, Any] = {"client_secret_file": client_secret_file, "service_name": service_name,
                            "base_url": base_url, "scopes": list(scopes), "overwrite": overwrite}  # fmt: skip
    if redirect_uri:
        body["redirect_uri"] = redirect_uri
    return Call("POST", "/auth/oauth2/authorize", json=body)


def ssh_exec(service: str, command: str, timeout: float | None = None) -> Call:
    body: dict[str, Any] = {"command": command}
    if timeout is not None:
        body["timeout"] = timeout
    return Call("POST", f"/ssh/{segment(service)}/exec", json=body, result=ExecResult.from_json)


def ssh_upload(service: str, content: Any, remote_path: str, mode: str = "0644") -> Call:
    """``content``: bytes or a binary file object (streamed by httpx)."""
    files = {"file": ("upload", content, "application/octet-stream")}
    return Call("POST", f"/ssh/{segment(service)}/upload", data={"remote_path": remote_path, "mode": mode},
                files=files)  # fmt: skip


def ssh_download(service: str, remote_path: str) -> Call:
    return Call("POST", f"/ssh/{segment(service)}/download", json={"remote_path": remote_path}, raw=True)


def session(proto: str, service: str, timeout: int | None = None, client_secret: bool = True) -> Call:
    params = {"timeout": str(timeout)} if timeout is not None else {}
    if not client_secret:
        params["client_secret"] = "false"
    return Call("POST", f"/{segment(proto)}/{segment(service)}/session", result=Session.from_json,
                kwargs={"params": params} if params else {})  # fmt: skip


def unlock(password: str) -> Call:
    return Call("POST", "/auth/unlock", json={"password": password}, auth=False, result=TokenInfo.from_json)


def lock() -> Call:
    return Call("POST", "/auth/lock")


def change_password(current: str, new: str) -> Call:
    return Call("POST", "/auth/passwd", json={"current_password": current, "new_password": new})


# --- services -------------------------------------------------------------------------------


def list_services() -> Call:
    return Call("GET", "/services", result=ServiceInfo.from_json)


def get_service(name: str) -> Call:
    return Call("GET", f"/services/{segment(name)}", result=ServiceInfo.from_json)


def add_service(service: Mapping[str, Any]) -> Call:
    return Call("POST", "/services", json=dict(service), result=ServiceInfo.from_json)


def update_service(name: str, service: Mapping[str, Any]) -> Call:
    return Call("PUT", f"/services/{segment(name)}", json=dict(service), result=ServiceInfo.from_json)


def remove_service(name: str) -> Call:
    return Call("DELETE", f"/services/{segment(name)}")


# --- tokens ---------------------------------------------------------------------------------


def create_token(
    scope: str = "proxy",
    services: list[str] | None = None,
    ttl: str | int | float | timedelta | None = None,
    name: str | None = None,
) -> Call:
    body: dict[str, Any] = {"scope": scope}
    if services:
        body["services"] = list(services)
    if ttl is not None:
        body["ttl"] = format_ttl(ttl)
    if name:
        body["name"] = name
    return Call("POST", "/tokens", json=body, result=TokenInfo.from_json)


def list_tokens() -> Call:
    return Call("GET", "/tokens", result=TokenInfo.from_json)


def revoke_token(id_or_prefix: str) -> Call:
    return Call("DELETE", f"/tokens/{segment(id_or_prefix)}")


# --- files ----------------------------------------------------------------------------------


def upload_file(name: str, data: bytes, mime_type: str | None = None) -> Call:
    if mime_type is None:
        import mimetypes  # only uploads need it; keeps the CLI's start-up short

        mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Call(
        "POST",
        "/files",
        data={"name": name},
        files={"file": (name, bytes(data), mime_type)},
        result=FileInfo.from_json,
    )


def list_files() -> Call:
    return Call("GET", "/files", result=FileInfo.from_json)


def get_file(name: str) -> Call:
    return Call("GET", f"/files/{segment(name)}", raw=True)


def delete_file(name: str) -> Call:
    return Call("DELETE", f"/files/{segment(name)}")


# --- proxy ----------------------------------------------------------------------------------


def proxy_url(service: str, path: str) -> str:
    """``/proxy/{service}/{path}``; ``path`` is sent as the caller encoded it (query allowed)."""
    return f"/proxy/{segment(service)}/{path.lstrip('/')}"


def proxy_kwargs(
    *,
    json: Any = None,
    data: Any = None,
    content: bytes | str | None = None,
    params: Any = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """httpx keyword arguments for a proxied request.

    ``data`` may be bytes/str (sent as the raw body) or a mapping (form-encoded).
    """
    out: dict[str, Any] = {}
    if json is not None:
        out["json"] = json
    if isinstance(data, bytes | bytearray | str):
        content = data if content is None else content
    elif data is not None:
        out["data"] = data
    if content is not None:
        out["content"] = content
    if params is not None:
        out["params"] = params
    out["headers"] = dict(headers or {})
    return out
