"""The injector for oauth2_client and service_account services: a fresh ``Authorization: Bearer``."""

from __future__ import annotations

from ..oauth.grants import TokenEndpointError
from ..oauth.manager import TokenManager
from ..proxy.errors import CredentialRefreshFailed
from ..vault.models import Service
from .credential import Credential


class OAuthInjector:
    static = False  # the token changes with every refresh

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    async def credential(self, service: Service) -> Credential:
        try:
            token = await self._manager.access_token(service)
        except TokenEndpointError as exc:
            raise CredentialRefreshFailed(exc.detail) from None
        # The scrubber hides the fresh token and every stored secret (client secret, refresh token).
        secrets = tuple(dict.fromkeys([token, *service.auth.secret_values()]))
        return Credential(service.base_url, (("Authorization", f"Bearer {token}"),), secrets)
