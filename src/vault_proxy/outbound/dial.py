"""Every socket the vault opens to an upstream is opened here (HTTP pool, OAuth, SSH, TCP sessions).

``connect`` resolves the host once through the address policy (``netguard``: a host with any refused
address is refused whole), then dials the checked addresses in turn, never the name again, so a second
DNS answer cannot redirect the connection. TLS, when asked for, checks the certificate against the
host name (SNI too) unless the service's ``tls_skip_verify`` chose the insecure context.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

from ..netguard import AddressPolicy, resolve_checked

CONNECT_TIMEOUT = 10.0

P = TypeVar("P", bound=asyncio.BaseProtocol)
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def client_tls(verified: ssl.SSLContext, skip_verify: bool) -> ssl.SSLContext:
    """The one meaning of ``tls_skip_verify``: encryption without certificate or host name checks."""
    if not skip_verify:
        return verified
    return insecure_tls()


def insecure_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verified_tls(ca_file: str | None = None) -> ssl.SSLContext:
    """The system trust store, plus ``--ca-file`` when given; host name checks always on."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


async def connect(
    factory: Callable[[], P],
    host: str,
    port: int,
    policy: AddressPolicy,
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> tuple[asyncio.Transport, P]:
    """A connection to ``host``:``port`` through the address policy (raises AddressNotAllowed,
    ResolveFailed, OSError or TimeoutError)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        addresses = await resolve_checked(host, port, policy)
        failure: OSError | None = None
        for address in addresses:
            try:
                return await loop.create_connection(  # type: ignore[return-value]
                    factory, address.address, port, ssl=tls, server_hostname=host if tls is not None else None
                )
            except OSError as exc:
                failure = exc
    raise failure or OSError(f"cannot connect to {host}:{port}")


async def open_stream(
    host: str, port: int, policy: AddressPolicy, *, timeout: float = CONNECT_TIMEOUT
) -> tuple[Stream, str]:
    """Plain TCP as asyncio streams (the sessions' drivers speak their protocol on it); returns the
    stream and the checked address it reached."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    transport, protocol = await connect(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), host, port, policy, timeout=timeout
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    peer = transport.get_extra_info("peername")
    return (reader, writer), str(peer[0]) if peer else ""


async def upgrade_tls(
    stream: Stream, host: str, context: ssl.SSLContext, *, timeout: float = CONNECT_TIMEOUT
) -> Stream:
    """Implicit TLS or after STARTTLS on an open stream; SNI and certificate checked against ``host``."""
    reader, writer = stream
    await asyncio.wait_for(writer.start_tls(context, server_hostname=host), timeout)
    return reader, writer


async def connected_socket(
    host: str, port: int, policy: AddressPolicy, *, timeout: float = CONNECT_TIMEOUT
) -> socket.socket:
    """A connected blocking-mode-off socket for libraries that take one (asyncssh's ``sock=``)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        addresses = await resolve_checked(host, port, policy)
        failure: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if ":" in address.address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (address.address, port))
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
    raise failure or OSError(f"cannot connect to {host}:{port}")
