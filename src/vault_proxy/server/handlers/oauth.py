"""The OAuth2 browser consent flow (SPEC §10): authorize → provider consent page → callback.

The callback is opened by the user's browser, so it needs no vault token: the single-use ``state``
(bound to a PKCE verifier the browser never sees) is what authenticates it.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ...oauth.consent import GOOGLE_AUTH_URL, TooManyPending, authorization_url
from ...oauth.grants import GOOGLE_TOKEN_URL, TokenEndpointError, request_token
from ...oauth.sources import check_token_url, google_client
from ...vault.info import service_info
from ...vault.models import Service, validate_service_name
from ...vault.validation import ServiceValidationError, parse_service
from ..bodies import json_response, read_json_object
from ..context import AppContext, ctx
from ..errors import BadRequest, Conflict, TooManyRequests
from ..routing import endpoint


def _client_json(context: AppContext, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise BadRequest("client_secret_file is required (the name of a stored Google client JSON file)")
    stored = context.store.files.get(name)
    if stored is None:
        raise BadRequest(f'client_secret_file "{name}" is not a stored file')
    try:
        client = google_client(json.loads(stored.data()))
    except (ValueError, AttributeError):
        raise BadRequest(f'client_secret_file "{name}" is not a Google client JSON file') from None
    if not isinstance(client, dict) or not client.get("client_id") or not client.get("client_secret"):
        raise BadRequest(f'client_secret_file "{name}" has no client_id/client_secret')
    return client


def _draft_service(name: str, base_url: str, client: dict[str, Any], scopes: list[str], tokens: dict) -> dict:
    auth = {"type": "oauth2_client", "client_id": client["client_id"], "client_secret": client["client_secret"],
            "token_url": client.get("token_uri") or GOOGLE_TOKEN_URL, "scopes": scopes, **tokens}  # fmt: skip
    return {"name": name, "base_url": base_url, "auth": auth}


@endpoint("oauth2.authorize", "admin")
async def authorize(request: web.Request) -> web.Response:
    context = ctx(request)
    body = await read_json_object(request)
    client = _client_json(context, body.get("client_secret_file"))
    try:
        name = validate_service_name(body.get("service_name"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise BadRequest("scopes must be a list of strings")
    base_url = body.get("base_url")
    placeholder = {"access_token": "placeholder", "refresh_token": "placeholder"}
    try:  # the service must be valid before anyone is sent to a consent page
        parse_service(_draft_service(name, base_url, client, scopes, placeholder))  # type: ignore[arg-type]
    except ServiceValidationError as exc:
        raise BadRequest(str(exc)) from None
    overwrite = body.get("overwrite", False) is True
    if name in context.store.services and not overwrite:
        raise Conflict(f'service "{name}" already exists (send "overwrite": true to replace it)')
    redirect_uri = body.get("redirect_uri") or f"{request.scheme}://{request.host}/auth/oauth2/callback"
    if not isinstance(redirect_uri, str) or urlsplit(redirect_uri).scheme not in ("http", "https"):
        raise BadRequest("redirect_uri must be an http(s) URL")
    try:
        pending = context.consents.begin(service_name=name, base_url=base_url, scopes=scopes,
                                         redirect_uri=redirect_uri, client_secret_file=body["client_secret_file"],
                                         overwrite=overwrite)  # fmt: skip
    except TooManyPending as exc:
        raise TooManyRequests(str(exc)) from None
    auth_url = authorization_url(client.get("auth_uri") or GOOGLE_AUTH_URL, client["client_id"], pending)
    return json_response({"auth_url": auth_url, "redirect_uri": redirect_uri, "state": pending.state,
                          "message": "open auth_url in a browser and approve; the service is created on return "
                                     "(the link is valid for 5 minutes, once)"})  # fmt: skip


def _page(status: int, title: str, text: str) -> web.Response:
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>")  # fmt: skip
    response = web.Response(status=status, text=body, content_type="text/html")
    if status >= 400:
        response.headers["X-Vault-Error"] = "1"
    return response


@endpoint("oauth2.callback")
async def callback(request: web.Request) -> web.Response:
    context = ctx(request)
    pending = context.consents.take(request.query.get("state", ""))
    if pending is None:
        return _page(
            400, "Authorization failed", "Unknown or expired state: start again with vault-cli oauth2 authorize."
        )
    if request.query.get("error"):
        return _page(400, "Authorization denied", f"The provider answered: {request.query['error'][:100]}.")
    code = request.query.get("code", "")
    if not code:
        return _page(400, "Authorization failed", "The provider sent no code.")
    if not context.store.unlocked:
        return _page(423, "Vault locked", "Unlock the vault and start again.")
    client = _client_json(context, pending.client_secret_file)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri,
            "client_id": client["client_id"], "client_secret": client["client_secret"],
            "code_verifier": pending.code_verifier}  # fmt: skip
    try:
        token_url = check_token_url(client.get("token_uri") or GOOGLE_TOKEN_URL, "token_uri")
        parts = urlsplit(token_url)
        await context.upstream.precheck(parts.hostname or "", parts.port or 443, False)
        grant = await request_token(context.upstream.session(False), token_url, form)
    except Exception as exc:  # noqa: BLE001 - the detail goes to the audit log, the browser gets a summary
        detail = exc.detail if isinstance(exc, TokenEndpointError) else f"{type(exc).__name__}"
        context.audit.record("oauth2.callback_failed", service=pending.service_name, error=detail)
        return _page(502, "Authorization failed", "The token endpoint did not accept the code (see the audit log).")
    if not grant.refresh_token:
        return _page(502, "Authorization failed", "The provider returned no refresh token; start again (consent is "
                                                  "asked with prompt=consent and access_type=offline).")  # fmt: skip
    tokens = {"access_token": grant.access_token, "refresh_token": grant.refresh_token,
              "expires_at": _expiry(grant.expires_in)}  # fmt: skip
    body = _draft_service(pending.service_name, pending.base_url, client, pending.scopes, tokens)

    def build(previous: Service | None) -> Service:
        if previous is not None and not pending.overwrite:
            raise Conflict(f'service "{pending.service_name}" already exists')
        return parse_service(body)

    try:
        service = await context.store.put_service(pending.service_name, build)
    except Conflict as exc:
        return _page(409, "Service exists", f"{exc.message}; start again with overwrite to replace it.")
    context.prepared.drop(service.name)
    context.oauth.forget(service.name)
    info = service_info(service)
    return _page(200, "Service created", f'Service "{info["name"]}" is ready; you can close this window.')


def _expiry(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds").replace("+00:00", "Z")


def routes() -> list[web.RouteDef]:
    return [
        web.post("/auth/oauth2/authorize", authorize),
        web.get("/auth/oauth2/callback", callback, allow_head=False),
    ]
