"""Credential injectors: one small class per HTTP auth type.

An injector turns a stored service into the ``Credential`` for one outgoing request: headers to set
and the base URL to call. The static types compute it from the service alone; the OAuth types fetch
and refresh tokens first (``oauth.py``, bound to the server's token manager), which is why
``credential`` is a coroutine.
"""

from __future__ import annotations

from typing import Protocol

from ..vault.models import Service
from .credential import Credential
from .static import BasicInjector, BearerInjector, HeaderInjector, UrlInjector


class Injector(Protocol):
    async def credential(self, service: Service) -> Credential: ...


_INJECTORS: dict[str, Injector] = {
    "bearer": BearerInjector(),
    "header": HeaderInjector(),
    "basic": BasicInjector(),
    "url": UrlInjector(),
}


STATIC_AUTH_TYPES = tuple(_INJECTORS)


def injector_for(auth_type: str) -> Injector | None:
    """The injector for an HTTP auth type, or None when the proxy cannot inject it."""
    return _INJECTORS.get(auth_type)


__all__ = ["STATIC_AUTH_TYPES", "Credential", "Injector", "injector_for"]
