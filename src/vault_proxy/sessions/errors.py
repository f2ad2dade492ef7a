"""Session failures: the message names the step (connect, TLS, auth) and never a credential."""

from __future__ import annotations


class SessionError(Exception):
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionRefused(SessionError):
    status = 403
