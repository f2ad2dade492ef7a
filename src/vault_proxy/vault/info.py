"""ServiceInfo: the only description of a service that leaves the server. It never holds a secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .fingerprint import fingerprint_sha256
from .models import Service

# Non-secret auth fields shown to callers, per auth type. Anything not listed stays inside.
_PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "bearer": (),
    "header": ("header_name",),
    "basic": ("username",),
    "url": (),
    "oauth2_client": ("client_id", "token_url", "client_secret_file", "token_file", "scopes", "expires_at"),
    "service_account": ("file_ref", "sa_scopes", "sa_token_url", "sa_subject", "expires_at"),
    "ssh_key": (
        "ssh_host", "ssh_port", "ssh_user", "ssh_key_file_ref", "ssh_allowed_commands", "ssh_allowed_paths",
    ),
    "imap": ("imap_host", "imap_port", "imap_user", "imap_tls"),
    "smtp": ("smtp_host", "smtp_port", "smtp_user", "smtp_tls"),
    "redis": ("redis_host", "redis_port", "redis_username", "redis_db", "redis_tls", "redis_allowed_commands"),
    "postgres": (
        "postgres_host", "postgres_port", "postgres_user", "postgres_db", "postgres_tls", "postgres_read_only",
    ),
}  # fmt: skip
EXPIRING_WITHIN = timedelta(minutes=30)


def public_base_url(service: Service) -> str:
    """``base_url`` as shown to callers: a url-auth ``{token}`` placeholder stays a placeholder."""
    return service.base_url


def token_status(expires_at: str, now: datetime | None = None) -> str:
    """valid | expiring (< 30 min left) | expired, for a cached OAuth access token."""
    if not expires_at:
        return "expired"
    try:
        expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return "expired"
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if expiry <= now:
        return "expired"
    return "expiring" if expiry - now < EXPIRING_WITHIN else "valid"


def service_info(service: Service, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the ServiceInfo dict. ``extra`` carries runtime facts (e.g. ``ssh_connected``)."""
    auth = service.auth
    info: dict[str, Any] = {"name": service.name}
    if service.base_url:
        info["base_url"] = public_base_url(service)
    info["auth_type"] = auth.type
    for field in _PUBLIC_FIELDS[auth.type]:
        value = getattr(auth, field)
        if value not in ("", None, [], False) or field == "redis_db" and service.auth.type == "redis":
            info[field] = value
    if auth.type in ("oauth2_client", "service_account"):
        info["token_status"] = token_status(auth.expires_at if auth.access_token else "")
    if auth.type == "ssh_key" and auth.ssh_host_key:
        info["ssh_host_key_fingerprint"] = fingerprint_sha256(auth.ssh_host_key)
    if service.tls_skip_verify:
        info["tls_skip_verify"] = True
    if service.session_cookies:
        info["session_cookies"] = True
    if not service.redact_responses:
        info["redact_responses"] = False
    if service.max_request_mb:
        info["max_request_mb"] = service.max_request_mb
    if extra:
        info.update(extra)
    return info


def unreadable_info(name: str, stored: Any, reason: str) -> dict[str, Any]:
    """What is shown of a vault-file entry that cannot be read: its name, type, base_url and why.

    Only fields known to be non-secret are copied from the stored entry, and only when they are strings;
    ``auth_type`` is ``"unknown"`` when the entry names no type we know.
    """
    stored = stored if isinstance(stored, dict) else {}
    base_url, auth = stored.get("base_url"), stored.get("auth")
    kind = auth.get("type") if isinstance(auth, dict) else None
    info: dict[str, Any] = {"name": name}
    if isinstance(base_url, str) and base_url:
        info["base_url"] = base_url
    info["auth_type"] = kind if kind in _PUBLIC_FIELDS else "unknown"
    info["error"] = reason
    return info
