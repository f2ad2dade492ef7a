"""Dial an upstream for a TCP session through the outbound layer; failures become session errors."""

from __future__ import annotations

import ssl

from ..netguard import AddressNotAllowed, AddressPolicy, ResolveFailed
from ..outbound.dial import CONNECT_TIMEOUT, Stream, client_tls, open_stream, upgrade_tls
from .errors import FD_EXHAUSTED, SessionError, SessionRefused, os_failure

__all__ = ["CONNECT_TIMEOUT", "Stream", "client_tls", "dial", "secure"]


async def dial(proto: str, host: str, port: int, policy: AddressPolicy) -> tuple[Stream, str]:
    """A TCP connection to ``host``:``port`` after the address check; returns it and the address used."""
    try:
        return await open_stream(host, port, policy)
    except AddressNotAllowed as exc:
        raise SessionRefused(f"{proto} host address not allowed ({exc.reason})") from None
    except ResolveFailed:
        raise SessionError(f"{proto} connect failed: cannot resolve {host}") from None
    except TimeoutError:
        raise SessionError(f"{proto} connect failed: {host}:{port}: timed out") from None
    except OSError as exc:
        if exc.errno in FD_EXHAUSTED:  # out of file descriptors: a 503 (SessionUnavailable)
            raise os_failure(proto, "connect", exc) from None
        raise SessionError(f"{proto} connect failed: {host}:{port}: {exc.strerror or type(exc).__name__}") from None


async def secure(proto: str, stream: Stream, host: str, context: ssl.SSLContext) -> Stream:
    """Upgrade an open connection (implicit TLS or after STARTTLS), SNI and certificate check on ``host``."""
    try:
        return await upgrade_tls(stream, host, context)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        stream[1].close()
        raise SessionError(f"{proto} TLS failed: {getattr(exc, 'reason', None) or type(exc).__name__}") from None
