"""One compiled scrubber per service, rebuilt only when the service's secrets change."""

from __future__ import annotations

from ..injectors import Credential
from ..vault.models import Service
from .scrubber import Scrubber, secret_variants

_DISABLED = Scrubber([])


class ScrubberCache:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, Scrubber]] = {}

    def for_service(self, service: Service, credential: Credential) -> Scrubber:
        if not service.redact_responses:
            return _DISABLED
        key = (credential.secrets, credential.basic_pairs)
        cached = self._cache.get(service.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        scrubber = Scrubber(secret_variants(credential.secrets, credential.basic_pairs))
        self._cache[service.name] = (key, scrubber)
        return scrubber

    def drop(self, name: str) -> None:
        self._cache.pop(name, None)

    def clear(self) -> None:
        self._cache.clear()
