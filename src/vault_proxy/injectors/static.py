"""Injectors for credentials stored as-is: bearer, header, basic and url."""

from __future__ import annotations

import base64
from urllib.parse import quote

from ..redaction import SecretSet
from ..vault.models import Service
from ..vault.secret import reveal
from .credential import Credential

# Characters allowed unencoded in a URL path segment (RFC 3986 pchar minus '%'), so a token lands in
# the URL as one segment and cannot add a path, query or fragment.
_PCHAR_SAFE = "-._~!$&'()*+,;=:@"
# In the query only unreserved characters stay as they are: '&', '=', '+' and ';' mean something there
# (a '+' is read as a space), so a token in ``?key={token}`` must arrive as exactly one value.
_QUERY_SAFE = "-._~"


def _token_forms(token: str) -> tuple[str, str]:
    """The token as it goes into a URL path, and into a query string."""
    return quote(token, safe=_PCHAR_SAFE), quote(token, safe=_QUERY_SAFE)


def _fill_url(base_url: str, token: str) -> str:
    in_path, in_query = _token_forms(token)
    path, mark, query = base_url.partition("?")
    return path.replace("{token}", in_path) + mark + query.replace("{token}", in_query)


class BearerInjector:
    static = True  # depends on the service alone: reusable until the service changes

    async def credential(self, service: Service) -> Credential:
        token = reveal(service.auth.token)
        return Credential(service.base_url, (("Authorization", f"Bearer {token}"),), (token,))


class HeaderInjector:
    static = True

    async def credential(self, service: Service) -> Credential:
        value = reveal(service.auth.header_value)
        return Credential(service.base_url, ((service.auth.header_name, value),), (value,))


class BasicInjector:
    static = True

    async def credential(self, service: Service) -> Credential:
        user, password = service.auth.username, reveal(service.auth.password)
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return Credential(service.base_url, (("Authorization", f"Basic {encoded}"),), (password,), ((user, password),))


class UrlInjector:
    static = True

    async def credential(self, service: Service) -> Credential:
        token = reveal(service.auth.token)
        secrets = tuple(dict.fromkeys((token, *_token_forms(token))))
        return Credential(_fill_url(service.base_url, token), (), secrets)


def mask_url_token(service: Service, text: str) -> str:
    """``text`` with the service's URL token replaced by ``***`` (for log lines and errors)."""
    if service.auth.type != "url":
        return text
    token = reveal(service.auth.token)
    return SecretSet((token, *_token_forms(token))).mask(text)
