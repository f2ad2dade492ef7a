"""SSH client connections, on a socket the outbound layer dialled (address policy, checked address)."""

from __future__ import annotations

from typing import Any

import asyncssh

from ..netguard import AddressPolicy
from .dial import CONNECT_TIMEOUT, connected_socket


async def ssh_connect(
    host: str, port: int, policy: AddressPolicy, *, timeout: float = CONNECT_TIMEOUT, **options: Any
) -> asyncssh.SSHClientConnection:
    """Dial ``host``:``port`` through the address policy, then run the SSH handshake on that socket.

    No OpenSSH config or agent is consulted: the vault's own key and pin are the only inputs. Raises
    what :func:`connected_socket` raises, or asyncssh's errors.
    """
    sock = await connected_socket(host, port, policy, timeout=timeout)
    try:
        return await asyncssh.connect(
            host, port, sock=sock, config=None, agent_path=None, connect_timeout=timeout, **options
        )
    except BaseException:
        sock.close()
        raise
