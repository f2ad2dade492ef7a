"""A local OAuth2 authorization server and protected API for the vault's OAuth tests (aiohttp + a trustme CA).

It runs in its own thread and event loop on one HTTPS port of ``127.0.0.1`` with a certificate issued by
the caller's CA (the vault under test trusts it through ``--ca-file``), and checks every grant as strictly
as a real provider would.

Routes:

``POST /token``      ``refresh_token``, ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (Google service
                     accounts: RS256 signature and claims verified) and ``authorization_code`` (PKCE S256
                     required); form-encoded, client credentials in the form or as HTTP Basic. Every
                     request is recorded in ``grants()``.
``GET /authorize``   a placeholder consent page; tests approve with ``OAuthProvider.authorize(auth_url)``.
``/api[/...]``       the protected API: 200 JSON only with ``Authorization: Bearer <valid issued token>``.

Clients made with ``new_client(fail=...)`` fail every token request (``400``, ``500``, ``html`` or ``slow``)
with a body carrying ``OAuthProvider.PLANTED`` and the client secret, so tests can check that none of it
reaches a caller.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import random
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit, urlunsplit

import trustme
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from loop_thread import LoopThreadServer

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME = 3600  # service-account and code grants; also the bookkeeping expiry when expires_in is omitted
CLOCK_SKEW = 60  # allowed distance of a JWT's iat from now, seconds
SLOW_SECONDS = 20
FAIL_MODES = ("400", "500", "html", "slow")
PORT_MIN, PORT_MAX = 20000, 32767
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(sha256) without padding
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url (no padding in the input, no stray characters)."""
    if "=" in text:
        raise ValueError("padded base64url")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _listening_socket() -> socket.socket:
    """A socket bound to a free port in 20000-32767 on 127.0.0.1 (held until the server takes it)."""
    for _ in range(500):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", random.randint(PORT_MIN, PORT_MAX)))
        except OSError:
            sock.close()
            continue
        return sock
    raise RuntimeError("no free port in 20000-32767")


@dataclass
class OAuthClient:
    """A registered client; ``refresh_token`` is the newest one, ``refresh_tokens`` all issued, oldest first."""

    client_id: str
    client_secret: str
    refresh_token: str
    refresh_tokens: list[str] = field(default_factory=list)


@dataclass
class ServiceAccount:
    """A Google-style service account: its key JSON, and the ``sub`` of the last accepted assertion."""

    key_json: dict[str, Any]
    client_email: str
    public_key: rsa.RSAPublicKey
    subject_seen: str | None = None


@dataclass
class _Registration:
    client: OAuthClient
    rotate: bool = False
    expires_in: int | None = LIFETIME
    fail: str | None = None
    redirect_uris: list[str] = field(default_factory=list)


@dataclass
class _Account:
    account: ServiceAccount
    scopes_required: list[str]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str


class _Reject(Exception):
    """A token request refused with an OAuth error body (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.description = status, error, description

    def response(self) -> web.Response:
        doc = {"error": self.error}
        if self.description:
            doc["error_description"] = self.description
        return web.json_response(doc, status=self.status, headers=_NO_STORE)


class _Failing(Exception):
    """The client is configured to fail every token request."""

    def __init__(self, registration: _Registration) -> None:
        super().__init__(registration.fail)
        self.registration = registration


class OAuthProvider(LoopThreadServer):
    """The authorization server, its registered clients and service accounts, and what it has issued."""

    PLANTED = "planted-secret-in-error-body-7f3a"

    label = "test OAuth provider"

    def __init__(self, ca: trustme.CA, workdir: Path) -> None:
        super().__init__()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.ca_path = workdir / "oauth-provider-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.server_ctx)
        self._sock = _listening_socket()
        self.port: int = self._sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.token_url = f"{self.url}/token"
        self.api_url = f"{self.url}/api"
        self.authorize_url = f"{self.url}/authorize"
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._clients: dict[str, _Registration] = {}
        self._accounts: dict[str, _Account] = {}  # by client_email
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> client_id (only the currently valid ones)
        self._access: dict[str, float] = {}  # access token -> expiry (time.time())
        self._codes: dict[str, _Code] = {}
        self._refreshes: dict[str, int] = {}
        self._grants: list[dict[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self._sock.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get("/authorize", self._consent_page)
        for path in ("/api", "/api/{tail:.*}"):
            app.router.add_route("GET", path, self._api)
            app.router.add_route("POST", path, self._api)
        # A short shutdown_timeout so stop() does not wait for a "slow" token request to finish.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, ssl_context=self.server_ctx).start()

    # -- registration (called by tests) --------------------------------------------------------

    def new_client(
        self, *, rotate: bool = False, expires_in: int | None = 3600, fail: str | None = None
    ) -> OAuthClient:
        """A client with one refresh token; ``fail`` makes every token request for it fail that way."""
        assert fail is None or fail in FAIL_MODES, f"fail must be one of {FAIL_MODES}, not {fail!r}"
        return self._register(_Registration(self._blank_client(), rotate=rotate, expires_in=expires_in, fail=fail))

    def new_web_client(self, redirect_uris: list[str], kind: str = "installed") -> tuple[OAuthClient, dict[str, Any]]:
        """A client for the browser flow and its Google client-secret JSON (``{kind: {...}}``)."""
        assert kind in ("installed", "web"), f"kind must be 'installed' or 'web', not {kind!r}"
        client = self._register(_Registration(self._blank_client(), redirect_uris=list(redirect_uris)))
        doc = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "auth_uri": self.authorize_url,
            "token_uri": self.token_url,
            "redirect_uris": list(redirect_uris),
        }
        return client, {kind: doc}

    def new_service_account(self, *, pkcs1: bool = False, scopes_required: list[str] | None = None) -> ServiceAccount:
        """A fresh RSA 2048 service account; its key JSON has a PKCS#8 (or, with ``pkcs1``, PKCS#1) PEM key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode("ascii")
        with self._lock:
            serial = next(self._serial)
        email = f"sa-{serial}@test.iam.gserviceaccount.com"
        key_json = {
            "type": "service_account",
            "project_id": "test",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(random.randint(10**20, 10**21 - 1)),
            "token_uri": self.token_url,
        }
        account = ServiceAccount(key_json=key_json, client_email=email, public_key=key.public_key())
        with self._lock:
            self._accounts[email] = _Account(account, list(scopes_required or []))
        return account

    def _blank_client(self) -> OAuthClient:
        with self._lock:
            serial = next(self._serial)
        client_id = f"client-{serial}-{secrets.token_hex(4)}.apps.test"
        return OAuthClient(client_id=client_id, client_secret=f"cs-{secrets.token_urlsafe(24)}", refresh_token="")

    def _register(self, registration: _Registration) -> OAuthClient:
        client = registration.client
        with self._lock:
            self._clients[client.client_id] = registration
            self._refreshes[client.client_id] = 0
            self._new_refresh_token(client)
        return client

    def _new_refresh_token(self, client: OAuthClient) -> str:
        """Issue and register a refresh token for ``client`` (lock held)."""
        token = f"rt-{secrets.token_urlsafe(32)}"
        self._refresh_tokens[token] = client.client_id
        client.refresh_token = token
        client.refresh_tokens.append(token)
        return token

    # -- the browser side of the consent flow -------------------------------------------------

    def authorize(self, auth_url: str) -> str:
        """Approve ``auth_url`` as the user would; returns the redirect URL carrying a one-time code and the state."""
        assert auth_url.startswith(self.authorize_url + "?"), (
            f"auth_url must start with {self.authorize_url}?, got {auth_url!r}"
        )
        query = parse_qs(urlsplit(auth_url).query, keep_blank_values=True)
        repeated = sorted(name for name, values in query.items() if len(values) > 1)
        assert not repeated, f"authorization request repeats {repeated}"
        params = {name: values[0] for name, values in query.items()}
        client_id = params.get("client_id", "")
        with self._lock:
            registration = self._clients.get(client_id)
        assert registration is not None, f"authorization request for an unknown client_id {client_id!r}"
        assert params.get("response_type") == "code", (
            f"response_type must be 'code', got {params.get('response_type')!r}"
        )
        redirect_uri = params.get("redirect_uri", "")
        assert redirect_uri, "authorization request has no redirect_uri"
        if registration.redirect_uris:
            assert redirect_uri in registration.redirect_uris, (
                f"redirect_uri {redirect_uri!r} is not registered for the client ({registration.redirect_uris})"
            )
        state = params.get("state", "")
        assert state, "authorization request has no state"
        method = params.get("code_challenge_method")
        assert method == "S256", f"code_challenge_method must be 'S256', got {method!r}"
        challenge = params.get("code_challenge", "")
        assert challenge, "authorization request has no code_challenge"
        assert _CHALLENGE.fullmatch(challenge), f"code_challenge {challenge!r} is not a base64url SHA-256 digest"
        assert params.get("access_type") == "offline", (
            f"access_type must be 'offline' (to get a refresh token), got {params.get('access_type')!r}"
        )
        assert params.get("prompt") == "consent", f"prompt must be 'consent', got {params.get('prompt')!r}"
        scope = params.get("scope", "")
        assert scope.strip(), "authorization request has no scope"
        code = f"code-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._codes[code] = _Code(client_id, redirect_uri, challenge, scope)
        parts = urlsplit(redirect_uri)
        extra = urlencode({"code": code, "state": state})
        return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))

    # -- state for tests ----------------------------------------------------------------------

    def valid(self, access_token: str) -> bool:
        with self._lock:
            expiry = self._access.get(access_token)
        return expiry is not None and expiry > time.time()

    def refresh_count(self, client_id: str) -> int:
        """Successful refresh_token grants for ``client_id``."""
        with self._lock:
            return self._refreshes.get(client_id, 0)

    def grants(self) -> list[dict[str, Any]]:
        """Every /token request: grant_type, client_id (iss for jwt-bearer), status, time."""
        with self._lock:
            return [dict(g) for g in self._grants]

    def expire_all(self) -> None:
        """Invalidate every access token issued so far (server-side)."""
        with self._lock:
            for token in self._access:
                self._access[token] = 0.0

    # -- routes ---------------------------------------------------------------------------------

    async def _consent_page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="consent page")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not self.valid(token):
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return web.json_response({"error": "invalid_token"}, status=401, headers=headers)
        return web.json_response({"ok": True, "path": request.path, "token_suffix": token[-4:]})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        record: dict[str, Any] = {"grant_type": None, "client_id": None, "status": 0, "time": time.time()}
        delay = 0.0
        try:
            form = await _form(request)
            record["grant_type"] = form.get("grant_type")
            with self._lock:
                response = web.json_response(self._grant(form, request, record), headers=_NO_STORE)
        except _Reject as exc:
            response = exc.response()
        except _Failing as exc:
            response = self._failure(exc.registration)
            delay = SLOW_SECONDS if exc.registration.fail == "slow" else 0.0
        record["status"] = response.status
        with self._lock:
            self._grants.append(record)
        if delay:
            await asyncio.sleep(delay)
        return response

    def _failure(self, registration: _Registration) -> web.Response:
        """The configured failure, with PLANTED and the client secret in the body."""
        leak = f"{self.PLANTED} client_secret={registration.client.client_secret}"
        if registration.fail == "html":
            html = f"<html><body><h1>Sign in</h1><p>{leak}</p></body></html>"
            return web.Response(text=html, content_type="text/html")
        status, error = {"400": (400, "invalid_request"), "500": (500, "server_error")}.get(
            registration.fail or "", (504, "temporarily_unavailable")
        )
        return web.json_response({"error": error, "error_description": leak}, status=status, headers=_NO_STORE)

    # -- grants (lock held) ---------------------------------------------------------------------

    def _grant(self, form: dict[str, str], request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
        grant_type = form.get("grant_type", "")
        if grant_type == "refresh_token":
            return self._refresh_grant(form, request, record)
        if grant_type == JWT_BEARER:
            del record["client_id"]
            record["iss"] = None
            return self._jwt_grant(form, record)
        if grant_type == "authorization_code":
            return self._code_grant(form, request, record)
        if not grant_type:
            raise _Reject(400, "invalid_request", "grant_type missing")
        raise _Reject(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _authenticate(self, form: dict[str, str], request: web.Request, record: dict[str, Any]) -> _Registration:
        """The client named by the form or HTTP Basic, with its secret checked."""
        client_id, secret = _credentials(form, request)
        record["client_id"] = client_id or None
        registration = self._clients.get(client_id)
        if registration is not None and registration.fail:
            raise _Failing(registration)
        if registration is None:
            raise _Reject(401, "invalid_client", "unknown client_id")
        if secret is None or not secrets.compare_digest(secret.encode(), registration.client.client_secret.encode()):
            raise _Reject(401, "invalid_client", "client authentication failed")
        return registration

    def _issue(self, expires_in: int | None) -> dict[str, Any]:
        token = f"at-{secrets.token_urlsafe(24)}"
        self._access[token] = time.time() + (LIFETIME if expires_in is None else expires_in)
        doc: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if expires_in is not None:
            doc["expires_in"] = expires_in
        return doc

    def _refresh_grant(self, form: dict[str, str], request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
        registration = self._authenticate(form, request, record)
        client = registration.client
        token = form.get("refresh_token", "")
        if not token:
            raise _Reject(400, "invalid_request", "refresh_token missing")
        if self._refresh_tokens.get(token) != client.client_id:
            raise _Reject(400, "invalid_grant", "unknown, revoked or rotated refresh token")
        doc = self._issue(registration.expires_in)
        if registration.rotate:
            del self._refresh_tokens[token]
            doc["refresh_token"] = self._new_refresh_token(client)
        self._refreshes[client.client_id] += 1
        return doc

    def _jwt_grant(self, form: dict[str, str], record: dict[str, Any]) -> dict[str, Any]:
        def bad(description: str) -> _Reject:
            return _Reject(400, "invalid_grant", description)

        assertion = form.get("assertion", "")
        if not assertion:
            raise _Reject(400, "invalid_request", "assertion missing")
        parts = assertion.split(".")
        if len(parts) != 3:
            raise bad("assertion is not a JWS compact serialization (three dot-separated parts)")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise bad("assertion parts are not base64url JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise bad("assertion header and claims must be JSON objects")
        iss = claims.get("iss")
        record["iss"] = iss if isinstance(iss, str) else None
        if header.get("alg") != "RS256":
            raise bad(f"header alg must be RS256, got {header.get('alg')!r}")
        if "typ" in header and header["typ"] != "JWT":
            raise bad(f"header typ must be JWT, got {header['typ']!r}")
        unknown = sorted(set(header) - {"alg", "typ", "kid"})
        if unknown:
            raise bad(f"unexpected header fields {unknown}")
        entry = self._accounts.get(iss) if isinstance(iss, str) else None
        if entry is None:
            raise bad("iss is not a known service account")
        account = entry.account
        if "kid" in header and header["kid"] != account.key_json["private_key_id"]:
            raise bad("header kid is not the account's private_key_id")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        try:
            account.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise bad("invalid signature") from None
        if claims.get("aud") != self.token_url:
            raise bad(f"aud must be the token URL {self.token_url}, got {claims.get('aud')!r}")
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.strip():
            raise bad("scope must be a non-empty string")
        missing = [s for s in entry.scopes_required if s not in scope.split()]
        if missing:
            raise bad(f"scope lacks {missing}")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not _is_int(iat) or abs(iat - time.time()) > CLOCK_SKEW:
            raise bad(f"iat must be an integer within {CLOCK_SKEW} s of now, got {iat!r}")
        if not _is_int(exp) or exp != iat + LIFETIME:
            raise bad(f"exp must be iat + {LIFETIME}, got {exp!r}")
        sub = claims.get("sub")
        if sub is not None and (not isinstance(sub, str) or not sub):
            raise bad("sub must be a non-empty string when present")
        account.subject_seen = sub
        return self._issue(LIFETIME)

    def _code_grant(self, form: dict[str, str], request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
        registration = self._authenticate(form, request, record)
        code = form.get("code", "")
        if not code:
            raise _Reject(400, "invalid_request", "code missing")
        stored = self._codes.pop(code, None)  # one attempt per code, whatever its outcome
        if stored is None:
            raise _Reject(400, "invalid_grant", "unknown or already used code")
        if stored.client_id != registration.client.client_id:
            raise _Reject(400, "invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != stored.redirect_uri:
            raise _Reject(400, "invalid_grant", "redirect_uri does not match the authorization request")
        verifier = form.get("code_verifier", "")
        if not verifier:
            raise _Reject(400, "invalid_grant", "PKCE verification failed: code_verifier missing")
        if not _VERIFIER.fullmatch(verifier):
            raise _Reject(400, "invalid_grant", "PKCE verification failed: malformed code_verifier")
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        if not secrets.compare_digest(challenge, stored.code_challenge):
            raise _Reject(400, "invalid_grant", "PKCE verification failed")
        doc = self._issue(LIFETIME)
        doc["refresh_token"] = self._new_refresh_token(registration.client)
        doc["scope"] = stored.scope
        return doc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _form(request: web.Request) -> dict[str, str]:
    """The form-encoded body; a parameter may appear once (RFC 6749 §3.2)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise _Reject(400, "invalid_request", "token requests must be application/x-www-form-urlencoded")
    posted = await request.post()
    form: dict[str, str] = {}
    for name, value in posted.items():
        if name in form:
            raise _Reject(400, "invalid_request", f"parameter {name} repeated")
        if not isinstance(value, str):
            raise _Reject(400, "invalid_request", f"parameter {name} is not text")
        form[name] = value
    return form


def _credentials(form: dict[str, str], request: web.Request) -> tuple[str, str | None]:
    """(client_id, client_secret) from HTTP Basic (RFC 6749 §2.3.1) or else from the form."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return form.get("client_id", ""), form.get("client_secret")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _Reject(401, "invalid_client", "malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise _Reject(401, "invalid_client", "malformed Basic credentials")
    client_id, secret = unquote_plus(user), unquote_plus(password)
    if "client_secret" in form:
        raise _Reject(400, "invalid_request", "client authenticated twice (Basic and client_secret)")
    if form.get("client_id", client_id) != client_id:
        raise _Reject(400, "invalid_request", "client_id in the form differs from the Basic credentials")
    return client_id, secret
