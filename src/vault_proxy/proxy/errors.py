"""Failures of a proxied call. ``message`` is what the caller sees; ``cause`` goes to the audit log only."""

from __future__ import annotations


class ProxyError(Exception):
    status = 502

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class UpstreamFailed(ProxyError):
    status = 502

    def __init__(self, cause: str = "") -> None:
        super().__init__("upstream request failed", cause)


class UpstreamTimeout(ProxyError):
    status = 504

    def __init__(self, cause: str = "") -> None:
        super().__init__("upstream request timed out", cause)


class AddressRefused(ProxyError):
    status = 403

    def __init__(self, cause: str = "") -> None:
        super().__init__("upstream address not allowed", cause)


class PlainHttpRefused(ProxyError):
    status = 403

    def __init__(self) -> None:
        super().__init__("upstream must use https (plain http needs tls_skip_verify on the service)")


class BodyTooLarge(ProxyError):
    status = 413

    def __init__(self, cap_mb: int) -> None:
        super().__init__(f"request body too large (max {cap_mb} MiB for this service)")


class UnscannableEncoding(ProxyError):
    """The message never quotes the upstream's coding (it is upstream-controlled: it could be a secret)."""

    status = 502

    def __init__(self, cause: str = "") -> None:
        super().__init__("upstream response uses a content coding the vault cannot scan for secrets", cause)


class CredentialRefreshFailed(ProxyError):
    """The token endpoint failed: the caller never sees its answer, the audit log gets the masked detail."""

    status = 502

    def __init__(self, cause: str = "") -> None:
        super().__init__("credential refresh failed", cause)
