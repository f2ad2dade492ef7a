"""SSH failures; ``message`` is safe for the caller, ``cause`` goes to the audit log only."""

from __future__ import annotations


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
