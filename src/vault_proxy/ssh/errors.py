"""SSH failures; ``message`` is safe for the caller, ``cause`` goes to the audit log only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncssh


class SshError(Exception):
    status = 502

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause or message


class HostKeyMismatch(SshError):
    def __init__(self, cause: str) -> None:
        super().__init__("host key mismatch", cause)


class SshConnectFailed(SshError):
    def __init__(self, cause: str) -> None:
        super().__init__("ssh connection failed", cause)


class SshKeyUnusable(SshError):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SshHostRefused(SshError):
    status = 403

    def __init__(self, cause: str) -> None:
        super().__init__("ssh host address not allowed", cause)


class SshBusy(SshError):
    """The SSH server refused another channel on the shared connection (sshd's MaxSessions)."""

    status = 503

    def __init__(self, cause: str) -> None:
        super().__init__("ssh server refused a new channel (too many at once on this service): retry shortly", cause)


@contextlib.contextmanager
def channel_errors() -> Iterator[None]:
    """Around opening an exec, SFTP or shell channel: a refused channel is a 503, not a 500."""
    try:
        yield
    except asyncssh.ChannelOpenError as exc:
        raise SshBusy(f"ChannelOpenError: {exc.reason}"[:300]) from None
