"""Redis sessions: the vault sends AUTH and SELECT upstream; the client's side is ``redis_filter``.

The local client logs in with the session's client secret (``AUTH`` / ``HELLO … AUTH``, answered here
and never forwarded); its commands then pass the command filter, and every reply the stored-password
mask (see ``driver``).
"""

from __future__ import annotations

import asyncio

from ..redaction import SecretSet
from ..vault.models import RedisAuth
from ..vault.secret import reveal
from .dial import Stream
from .errors import SessionError
from .listener import Driver
from .masking import ReplyMask
from .redis_filter import RedisFilter
from .redis_replies import Markers, RespFrames
from .redis_wire import encode

TIMEOUT = 10.0


async def _reply_line(reader: asyncio.StreamReader) -> bytes:
    line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    if not line.endswith(b"\r\n"):
        raise SessionError("redis auth failed: the server closed the connection")
    return line[:-2]


async def login(stream: Stream, auth: RedisAuth) -> None:
    """AUTH (with the ACL user when set) and SELECT, each answer checked; raises SessionError."""
    reader, writer = stream
    password = reveal(auth.redis_password)
    try:
        if password:
            args = [b"AUTH", *([auth.redis_username.encode()] if auth.redis_username else []), password.encode()]
            writer.write(encode(*args))
            reply = await _reply_line(reader)
            if not reply.startswith(b"+"):
                message = reply.decode("utf-8", "replace").replace(password, "***")[:200]
                raise SessionError(f"redis auth failed: {message.lstrip('-')}")
        if auth.redis_db:
            writer.write(encode(b"SELECT", str(auth.redis_db).encode()))
            reply = await _reply_line(reader)
            if not reply.startswith(b"+"):
                raise SessionError(f"redis SELECT {auth.redis_db} failed: {reply.decode('utf-8', 'replace')[:200]}")
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"redis auth failed: {type(exc).__name__}") from None


def driver(auth: RedisAuth, client_secret: str | None) -> Driver:
    """The local side: no handshake of its own, the filter does the login (sans-I/O)."""
    markers = Markers()
    return Driver(
        client_filter=RedisFilter(markers, client_secret, auth.redis_allowed_commands),
        reply_filter=ReplyMask.of(SecretSet(auth.secret_values()), RespFrames(markers)),
    )
