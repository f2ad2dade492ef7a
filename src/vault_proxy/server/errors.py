"""Errors as values with a status. Handlers raise these; one middleware renders them as JSON."""

from __future__ import annotations


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429


class VaultLocked(ApiError):
    status = 503

    def __init__(self, message: str = "vault is locked") -> None:
        super().__init__(message)
