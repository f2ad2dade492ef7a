"""Injectors for credentials stored as-is: bearer, header, basic and url."""

from __future__ import annotations

import base64
from urllib.parse import quote

from ..vault.models import Service
from ..vault.secret import reveal
from .credential import Credential

# Characters allowed unencoded in a URL path segment (RFC 3986 pchar minus '%'), so a token lands in
# the URL as one segment and cannot add a path, query or fragment.
_PCHAR_SAFE = "-._~!$&'()*+,;=:@"


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
        encoded = quote(token, safe=_PCHAR_SAFE)
        secrets = (token, encoded) if encoded != token else (token,)
        return Credential(service.base_url.replace("{token}", encoded), (), secrets)


def mask_url_token(service: Service, text: str) -> str:
    """``text`` with the service's URL token replaced by ``***`` (for log lines and errors)."""
    if service.auth.type != "url":
        return text
    token = reveal(service.auth.token)
    for form in (token, quote(token, safe=_PCHAR_SAFE)):
        if form:
            text = text.replace(form, "***")
    return text
