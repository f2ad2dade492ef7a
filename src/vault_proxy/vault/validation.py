"""Turn untrusted service JSON into a ``Service``, with error messages that name the field."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from .models import AUTH_TYPES, Service, validate_service_name


class ServiceValidationError(ValueError):
    """A service body was rejected; the message is safe to show (it never quotes a secret)."""


def parse_service(data: Any, *, name: str | None = None, previous: Service | None = None) -> Service:
    """Validate a service body from the API. ``name`` (from a URL path) overrides the body's name.

    Known fields are type-strict (a boolean is true/false, never "yes" or 1; SPEC §3). The vault
    file is read with ``parse_stored_service`` instead, which keeps accepting older, laxer shapes.

    ``previous`` is the stored service of the same name: state the new body does not mention
    (a pinned SSH host key, cached OAuth tokens) is carried over, so a re-post never drops it.
    """
    if not isinstance(data, dict):
        raise ServiceValidationError("service body must be a JSON object")
    data = dict(data)
    if name is not None:
        try:
            data["name"] = validate_service_name(name)
        except ValueError as exc:
            raise ServiceValidationError(str(exc)) from None
    auth = data.get("auth")
    if not isinstance(auth, dict):
        raise ServiceValidationError("auth is required and must be an object with a type")
    kind = auth.get("type")
    if kind not in AUTH_TYPES:
        raise ServiceValidationError(f"auth.type must be one of: {', '.join(AUTH_TYPES)}")
    if previous is not None and previous.auth.type == kind:
        data["auth"] = _carry_over(previous, auth)
    try:
        service = Service.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ServiceValidationError(describe(exc, kind)) from None
    # Checked for new input only: a vault written by the Go tool may hold plain-http services, which
    # then fail at call time with the same explanation instead of disappearing on load.
    if service.base_url.lower().startswith("http://") and not service.tls_skip_verify:
        raise ServiceValidationError('base_url must use https:// (plain http needs "tls_skip_verify": true)')
    return service


def parse_stored_service(raw: Any) -> Service:
    """A service entry from the vault file, read leniently (what older vaults and the Go tool wrote).

    Raises ``ServiceValidationError`` with the reason when the entry still cannot be read.
    """
    if not isinstance(raw, dict):
        raise ServiceValidationError("service entry is not a JSON object")
    auth = raw.get("auth")
    kind = auth.get("type") if isinstance(auth, dict) else None
    try:
        return Service.model_validate(raw)
    except ValidationError as exc:
        raise ServiceValidationError(describe(exc, kind if isinstance(kind, str) else "")) from None
    except ValueError as exc:
        raise ServiceValidationError(str(exc)) from None


_KEPT_STATE = {
    "ssh_key": ("ssh_host_key",),
    "oauth2_client": ("access_token", "expires_at", "refresh_token"),
    "service_account": ("access_token", "expires_at"),
}


def _carry_over(previous: Service, auth: dict[str, Any]) -> dict[str, Any]:
    merged = dict(auth)
    stored = previous.stored_dict()["auth"]
    for field in _KEPT_STATE.get(previous.auth.type, ()):
        if field not in merged and field in stored:
            merged[field] = stored[field]
    return merged


_UNION_MEMBER = re.compile(r"str|int|float|bool|none|(list|dict|literal)\[.*\]", re.IGNORECASE)


def describe(exc: ValidationError, kind: str = "") -> str:
    """One message for the first problem, naming the field, phrased for a person (no input values echoed)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in error["loc"]]
    if len(loc) > 1 and _UNION_MEMBER.fullmatch(loc[-1]):
        # Every member of a union refused the value (e.g. ttl: a string or a number); name the field only.
        loc = loc[:-1]
        return f"{'.'.join(loc[2:] if loc[:2] == ['auth', kind] else loc)}: wrong type"
    if loc[:2] == ["auth", kind]:
        loc = loc[2:]
        where = f"{kind} auth"
    else:
        where = ""
    field = ".".join(loc)
    if error["type"] in ("missing", "string_too_short", "too_short"):
        return f"{where} requires {field}" if where else f"{field} is required"
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = error["msg"][0].lower() + error["msg"][1:]
    target = f"{where} field {field}" if where and field else field or where
    return f"{target}: {message}".strip(": ")
