"""Where an OAuth service's client settings come from: its own fields or the stored Google JSON files.

``client_secret_file`` is Google's client JSON (``{"installed": {...}}`` or ``{"web": {...}}``),
``token_file`` a JSON document with a ``refresh_token`` (Google's ``authorized_user`` files qualify),
``file_ref`` a service-account key JSON. A refresh token stored on the service itself (a rotated one)
wins over the one in ``token_file``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..vault.models import OAuth2ClientAuth, ServiceAccountAuth
from ..vault.secret import reveal
from .grants import GOOGLE_TOKEN_URL, TokenEndpointError


class _StoredFile(Protocol):
    def data(self) -> bytes: ...


@dataclass(frozen=True)
class ClientSettings:
    client_id: str
    client_secret: str = field(repr=False)
    token_url: str
    refresh_token: str = field(repr=False)
    scopes: list[str]


@dataclass(frozen=True)
class ServiceAccountSettings:
    client_email: str
    private_key: str = field(repr=False)
    token_url: str
    scopes: list[str]
    subject: str


def _json_file(files: Mapping[str, _StoredFile], name: str, what: str) -> dict[str, Any]:
    stored = files.get(name)
    if stored is None:
        raise TokenEndpointError(f'{what} "{name}" is not a stored file')
    try:
        doc = json.loads(stored.data())
    except ValueError:
        raise TokenEndpointError(f'{what} "{name}" is not valid JSON') from None
    if not isinstance(doc, dict):
        raise TokenEndpointError(f'{what} "{name}" is not a JSON object')
    return doc


def google_client(doc: dict[str, Any]) -> dict[str, Any]:
    """The client section of a Google client JSON (``installed`` or ``web``), or the document itself."""
    for kind in ("installed", "web"):
        if isinstance(doc.get(kind), dict):
            return doc[kind]
    return doc


def check_token_url(url: str, what: str) -> str:
    """Token URLs are called with the client secret or a signed assertion: https only."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise TokenEndpointError(f"{what} must be an https:// URL")
    return url


def client_settings(auth: OAuth2ClientAuth, files: Mapping[str, _StoredFile]) -> ClientSettings:
    if not auth.client_secret_file:
        return ClientSettings(auth.client_id, reveal(auth.client_secret), check_token_url(auth.token_url, "token_url"),
                              reveal(auth.refresh_token), list(auth.scopes))  # fmt: skip
    client = google_client(_json_file(files, auth.client_secret_file, "client_secret_file"))
    tokens = _json_file(files, auth.token_file, "token_file")
    refresh = reveal(auth.refresh_token) or str(tokens.get("refresh_token") or "")
    client_id = auth.client_id or str(client.get("client_id") or tokens.get("client_id") or "")
    secret = reveal(auth.client_secret) or str(client.get("client_secret") or tokens.get("client_secret") or "")
    token_url = auth.token_url or str(client.get("token_uri") or tokens.get("token_uri") or GOOGLE_TOKEN_URL)
    missing = [name for name, value in (("client_id", client_id), ("client_secret", secret),
                                        ("refresh_token", refresh)) if not value]  # fmt: skip
    if missing:
        raise TokenEndpointError(f"client_secret_file/token_file do not provide {', '.join(missing)}")
    scopes = list(auth.scopes) or [str(s) for s in tokens.get("scopes", []) if isinstance(s, str)]
    return ClientSettings(client_id, secret, check_token_url(token_url, "token URL"), refresh, scopes)


def service_account_settings(auth: ServiceAccountAuth, files: Mapping[str, _StoredFile]) -> ServiceAccountSettings:
    key = _json_file(files, auth.file_ref, "file_ref")
    email, private_key = key.get("client_email"), key.get("private_key")
    if not isinstance(email, str) or not email or not isinstance(private_key, str) or not private_key:
        raise TokenEndpointError(f'file_ref "{auth.file_ref}" is not a service account key (client_email, private_key)')
    token_url = auth.sa_token_url or str(key.get("token_uri") or GOOGLE_TOKEN_URL)
    return ServiceAccountSettings(email, private_key, check_token_url(token_url, "token URL"), list(auth.sa_scopes),
                                  auth.sa_subject)  # fmt: skip
