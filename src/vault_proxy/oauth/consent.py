"""The browser consent flow's pending requests: ``state`` plus a PKCE verifier, single use, short-lived.

``POST /auth/oauth2/authorize`` registers one and gets the URL to open; the provider sends the browser
back to ``/auth/oauth2/callback`` with ``code`` and ``state``, which is taken (removed) here exactly
once. At most ``MAX_PENDING`` wait at a time, each for ``STATE_TTL`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

STATE_TTL = 300.0
MAX_PENDING = 10
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"


class TooManyPending(Exception):
    """More than ``MAX_PENDING`` consent flows are waiting."""


@dataclass(frozen=True)
class PendingConsent:
    state: str
    code_verifier: str = field(repr=False)
    service_name: str
    base_url: str
    scopes: list[str]
    redirect_uri: str
    client_secret_file: str
    overwrite: bool
    created: float

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ConsentStates:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, PendingConsent] = {}

    def begin(self, **details) -> PendingConsent:
        self._expire()
        if len(self._pending) >= MAX_PENDING:
            raise TooManyPending(f"too many consent flows in progress (at most {MAX_PENDING}, each valid 5 min)")
        pending = PendingConsent(state=secrets.token_urlsafe(24), code_verifier=secrets.token_urlsafe(48),
                                 created=self._clock(), **details)  # fmt: skip
        self._pending[pending.state] = pending
        return pending

    def take(self, state: str) -> PendingConsent | None:
        """The pending flow for ``state``, removed: a second use, or one after 5 min, gets None."""
        self._expire()
        return self._pending.pop(state, None)

    def clear(self) -> None:
        self._pending.clear()

    def _expire(self) -> None:
        cutoff = self._clock() - STATE_TTL
        for state in [s for s, p in self._pending.items() if p.created < cutoff]:
            del self._pending[state]


def authorization_url(auth_uri: str, client_id: str, pending: PendingConsent) -> str:
    query = {
        "client_id": client_id,
        "redirect_uri": pending.redirect_uri,
        "response_type": "code",
        "scope": " ".join(pending.scopes),
        "state": pending.state,
        "code_challenge": pending.code_challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",  # ask for a refresh token
        "prompt": "consent",  # and get one again even if the user consented before
    }
    return f"{auth_uri}{'&' if '?' in auth_uri else '?'}{urlencode(query)}"
