"""Per-service work done once and reused by every proxied call: credential, scrubber, upstream URLs.

A static credential (bearer, header, basic, url) depends on the service alone, so it is kept until
the service object is replaced: any update, and every unlock, builds new ``Service`` objects. OAuth
credentials change with each token refresh; their ``PreparedService`` lives for one call.
Everything here holds secrets in memory, so the owner clears it on lock.
"""

from __future__ import annotations

from ..injectors import Credential
from ..outbound.destination import Destination, resolve
from ..redaction import Scrubber, SecretSet
from ..vault.models import Service
from .scrub_cache import SecretSetCache

# Distinct request paths remembered per service; past this the memo starts over (bounded memory).
MAX_REMEMBERED_URLS = 512


_DISABLED = Scrubber([])


class PreparedService:
    __slots__ = ("service", "credential", "secrets", "scrubber", "_urls")

    def __init__(self, service: Service, credential: Credential, secrets: SecretSet) -> None:
        self.service = service
        self.credential = credential
        self.secrets = secrets  # always: errors and log lines are masked even with redaction off
        self.scrubber = secrets.scrubber if service.redact_responses else _DISABLED
        self._urls: dict[str, Destination] = {}

    def destination(self, tail: str) -> Destination:
        """Where the caller's path+query after ``/proxy/{service}`` goes (memoised; raises
        ``DestinationRefused`` for a tail the destination rule refuses)."""
        destination = self._urls.get(tail)
        if destination is None:
            if len(self._urls) >= MAX_REMEMBERED_URLS:
                self._urls.clear()
            destination = self._urls[tail] = resolve(self.credential.base_url, tail)
        return destination


class PreparedServices:
    def __init__(self) -> None:
        self._static: dict[str, PreparedService] = {}
        self._secrets = SecretSetCache()

    def cached(self, service: Service) -> PreparedService | None:
        """The prepared form of ``service`` if its static credential is still current."""
        hit = self._static.get(service.name)
        return hit if hit is not None and hit.service is service else None

    def prepare(self, service: Service, credential: Credential, *, static: bool) -> PreparedService:
        prepared = PreparedService(service, credential, self._secrets.for_service(service, credential))
        if static:
            self._static[service.name] = prepared
        return prepared

    def drop(self, name: str) -> None:
        self._static.pop(name, None)
        self._secrets.drop(name)

    def clear(self) -> None:
        self._static.clear()
        self._secrets.clear()
