"""Dial an upstream for a TCP session: address policy first, then TCP to the checked address, then TLS."""

from __future__ import annotations

import asyncio
import ssl

from ..netguard import AddressNotAllowed, AddressPolicy, ResolveFailed, resolve_checked
from .errors import SessionError, SessionRefused

CONNECT_TIMEOUT = 10.0

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def client_tls(ca_context: ssl.SSLContext, skip_verify: bool) -> ssl.SSLContext:
    if not skip_verify:
        return ca_context
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def dial(proto: str, host: str, port: int, policy: AddressPolicy) -> tuple[Stream, str]:
    """A TCP connection to ``host``:``port`` after the address check; returns it and the address used."""
    try:
        resolved = await asyncio.wait_for(resolve_checked(host, port, policy), CONNECT_TIMEOUT)
    except AddressNotAllowed as exc:
        raise SessionRefused(f"{proto} host address not allowed ({exc.reason})") from None
    except (ResolveFailed, TimeoutError):
        raise SessionError(f"{proto} connect failed: cannot resolve {host}") from None
    address = resolved[0].address
    try:
        stream = await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise SessionError(f"{proto} connect failed: {host}:{port}: {reason}") from None
    return stream, address


async def start_tls(proto: str, stream: Stream, host: str, context: ssl.SSLContext) -> Stream:
    """Upgrade an open connection (implicit TLS or after STARTTLS), SNI and certificate check on ``host``."""
    reader, writer = stream
    try:
        await asyncio.wait_for(writer.start_tls(context, server_hostname=host), CONNECT_TIMEOUT)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        writer.close()
        raise SessionError(f"{proto} TLS failed: {getattr(exc, 'reason', None) or type(exc).__name__}") from None
    return reader, writer
