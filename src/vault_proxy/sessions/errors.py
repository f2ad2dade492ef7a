"""Session failures: the message names the step (connect, TLS, auth) and never a credential."""

from __future__ import annotations

import errno

# The process (or the system) is out of file descriptors: a temporary condition, answered 503.
FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


class SessionError(Exception):
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionRefused(SessionError):
    status = 403


class SessionUnavailable(SessionError):
    """Out of file descriptors (or another local resource): try again later."""

    status = 503


class ClientRejected(Exception):
    """The local client failed the session's login (wrong client secret, …); the reason goes to the audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def os_failure(proto: str, step: str, exc: OSError) -> SessionError:
    """An OSError as a session failure: 503 when file descriptors ran out, else 502 naming ``step``."""
    if exc.errno in FD_EXHAUSTED:
        return SessionUnavailable(f"{proto} session unavailable: too many open files on the vault server")
    return SessionError(f"{proto} {step} failed: {exc.strerror or type(exc).__name__}")
