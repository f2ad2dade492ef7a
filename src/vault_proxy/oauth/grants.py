"""Token endpoint requests (refresh-token, JWT-bearer, authorization-code) and their answers.

This module knows the wire formats only; who calls which endpoint and where the result is kept is
``manager.py``. Every failure is a ``TokenEndpointError`` whose ``detail`` is for the audit log and
has the request's secrets masked; callers of the proxy only ever see "credential refresh failed".
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..redaction import SecretSet

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SA_TOKEN_LIFETIME = 3600
# When a token response has no usable expires_in: long enough not to refresh on every call, short
# enough that a token with a shorter real life is renewed soon (a 401 upstream is the caller's cue).
DEFAULT_EXPIRES_IN = 3600
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_EXCERPT = 200


class TokenEndpointError(Exception):
    """The endpoint could not give a token. ``detail`` (masked) is for the audit log only."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str = field(default="", repr=False)  # set when the endpoint rotated it


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of ``secrets`` replaced by ``***`` (the one masking: ``SecretSet``)."""
    return SecretSet(secrets).mask(text)


async def request_token(
    session: aiohttp.ClientSession, token_url: str, form: dict[str, str], secrets: Iterable[str] = ()
) -> TokenGrant:
    """POST ``form`` to ``token_url`` and parse the JSON answer (RFC 6749 §5.1)."""
    secrets = [*secrets, *form.values()]
    try:
        async with session.post(
            token_url, data=form, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT, allow_redirects=False
        ) as resp:
            status = resp.status
            body = await resp.content.read(64 * 1024)
    except Exception as exc:  # noqa: BLE001 - any transport failure is one outcome
        raise TokenEndpointError(mask(f"token endpoint unreachable: {type(exc).__name__}: {exc}", secrets)) from None
    text = body.decode("utf-8", "replace")
    if status != 200:
        raise TokenEndpointError(mask(f"token endpoint answered {status}: {text[:_EXCERPT]}", secrets))
    try:
        doc = json.loads(text)
    except ValueError:
        raise TokenEndpointError(
            mask(f"token endpoint answered 200 with non-JSON: {text[:_EXCERPT]}", secrets)
        ) from None
    token = doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenEndpointError("token endpoint answered 200 without an access_token")
    refresh = doc.get("refresh_token")
    return TokenGrant(token, _expires_in(doc.get("expires_in")), refresh if isinstance(refresh, str) else "")


def _expires_in(value: object) -> int:
    try:
        seconds = int(value)  # type: ignore[arg-type]  # some servers send it as a string
    except (TypeError, ValueError):
        return DEFAULT_EXPIRES_IN
    return seconds if seconds > 0 else DEFAULT_EXPIRES_IN


def refresh_form(client_id: str, client_secret: str, refresh_token: str, scopes: list[str]) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "client_id": client_id, "client_secret": client_secret,
            "refresh_token": refresh_token}  # fmt: skip
    if scopes:
        form["scope"] = " ".join(scopes)
    return form


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def service_account_assertion(
    private_key_pem: str,
    client_email: str,
    token_url: str,
    scopes: list[str],
    subject: str = "",
    now: float | None = None,
) -> str:
    """The RS256-signed JWT a Google service account exchanges for an access token.

    Claims: ``iss`` = the account's email, ``scope``, ``aud`` = the token URL, ``iat``, ``exp`` =
    ``iat`` + 3600 and, for domain-wide delegation, ``sub``. PKCS#8 and PKCS#1 PEM keys both load.
    """
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise TokenEndpointError(f"service account private_key cannot be loaded: {type(exc).__name__}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TokenEndpointError("service account private_key is not an RSA key")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {"iss": client_email, "scope": " ".join(scopes), "aud": token_url,
                                 "iat": issued, "exp": issued + SA_TOKEN_LIFETIME}  # fmt: skip
    if subject:
        claims["sub"] = subject
    header = {"alg": "RS256", "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"
