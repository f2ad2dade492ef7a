"""Exceptions raised by the SDK. Importing this module imports nothing else."""

from __future__ import annotations


class VaultError(Exception):
    """An error answered by the vault itself (not by an upstream service).

    ``status_code`` is the HTTP status (0 when no HTTP answer was received);
    ``str(err)`` is the vault's message, e.g. ``service "x" not found``.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message)
        self.status_code = status_code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.message!r})"


class VaultConnectionError(VaultError):
    """The vault server could not be reached at ``addr`` (not running, wrong address)."""

    def __init__(self, addr: str, reason: str = "") -> None:
        message = f"cannot reach vault-server at {addr}"
        if reason:
            message = f"{message}: {reason}"
        super().__init__(0, message)
        self.addr = addr
        self.reason = reason


class VaultAddressError(VaultError, ValueError):
    """``VAULT_ADDR`` (or ``addr=``) is malformed or refused as insecure."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)
