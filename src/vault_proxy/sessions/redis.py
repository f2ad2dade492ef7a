"""Redis sessions: the vault sends AUTH and SELECT upstream; the client's side is ``redis_filter``.

The local client logs in with the session's client secret (``AUTH`` / ``HELLO … AUTH``, answered here
and never forwarded); its commands then pass the command filter, and every reply the stored-password
mask (see ``driver``).
"""

from __future__ import annotations

from ..redaction import SecretSet
from ..vault.models import RedisAuth
from ..vault.secret import reveal
from .dial import Stream
from .handshake import MAX_REPLY, Action, run_upstream
from .listener import Driver
from .masking import ReplyMask
from .redis_filter import RedisFilter
from .redis_replies import Markers, RespFrames
from .redis_wire import encode

TIMEOUT = 10.0


class RedisLogin:
    """AUTH (with the ACL user when set), then SELECT, one command at a time, each answer checked.

    A reply is one RESP line: ``+OK`` goes on, anything else fails naming the step, with every form
    of the service's secrets masked out of the server's words.
    """

    proto = "redis"

    def __init__(self, auth: RedisAuth) -> None:
        self._secrets = SecretSet(auth.secret_values())
        password = reveal(auth.redis_password)
        self._steps: list[tuple[bytes, str]] = []
        if password:
            user = [auth.redis_username.encode()] if auth.redis_username else []
            self._steps.append((encode(b"AUTH", *user, password.encode()), "auth"))
        if auth.redis_db:
            self._steps.append((encode(b"SELECT", str(auth.redis_db).encode()), f"SELECT {auth.redis_db}"))
        self._step = "auth"
        self._buffer = b""
        self.trailing = b""

    def start(self) -> Action:
        return self._next()

    def _next(self) -> Action:
        if not self._steps:
            self.trailing, self._buffer = self._buffer, b""
            return Action(done=True)
        command, self._step = self._steps.pop(0)
        return Action(send=command)

    def feed(self, data: bytes) -> Action:
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_REPLY:
                return Action(error=f"redis {self._step} failed: reply too long")
            return Action()
        reply, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        if not reply.startswith(b"+"):
            words = self._secrets.mask(reply.decode("utf-8", "replace"))[:200].lstrip("-")
            return Action(error=f"redis {self._step} failed: {words}")
        return self._next()

    def eof(self) -> Action:
        return Action(error=f"redis {self._step} failed: the server closed the connection")

    def tls_started(self) -> Action:  # Redis TLS is implicit: the handler upgrades before the login
        return Action(error="redis: unexpected TLS upgrade")


async def login(stream: Stream, auth: RedisAuth) -> Stream:
    """Run :class:`RedisLogin` on ``stream``; raises SessionError."""
    return await run_upstream(RedisLogin(auth), stream, None, TIMEOUT)


def driver(auth: RedisAuth, client_secret: str | None) -> Driver:
    """The local side: no handshake of its own, the filter does the login (sans-I/O)."""
    markers = Markers()
    return Driver(
        client_filter=RedisFilter(markers, client_secret, auth.redis_allowed_commands),
        reply_filter=ReplyMask.of(SecretSet(auth.secret_values()), RespFrames(markers)),
    )
