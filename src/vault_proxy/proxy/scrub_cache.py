"""One ``SecretSet`` (and so one compiled scrubber) per service, rebuilt only when its secrets change."""

from __future__ import annotations

from ..injectors import Credential
from ..redaction import SecretSet
from ..vault.models import Service


def secret_set_for(service: Service, credential: Credential) -> SecretSet:
    """The service's stored secrets plus the forms its injector derived (URL-encoded, basic pairs)."""
    return SecretSet((*credential.secrets, *service.secret_values()), credential.basic_pairs)


class SecretSetCache:
    def __init__(self) -> None:
        self._cache: dict[str, SecretSet] = {}

    def for_service(self, service: Service, credential: Credential) -> SecretSet:
        fresh = secret_set_for(service, credential)
        cached = self._cache.get(service.name)
        if cached is not None and cached.key == fresh.key:
            return cached
        self._cache[service.name] = fresh
        return fresh

    def drop(self, name: str) -> None:
        self._cache.pop(name, None)

    def clear(self) -> None:
        self._cache.clear()
