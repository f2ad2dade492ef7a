"""Redis sessions: the vault sends AUTH and SELECT upstream; the client's own AUTH never leaves the host.

Local side, until the first other command: ``AUTH …`` is answered ``+OK`` here; ``HELLO <ver> AUTH u p
[SETNAME n]`` goes upstream without its AUTH part (redis-py sends that by default). Everything from
the first other command on, pipelined bytes included, is spliced unchanged.
"""

from __future__ import annotations

import asyncio

from ..vault.models import RedisAuth
from ..vault.secret import reveal
from .dial import Stream
from .errors import SessionError

MAX_HANDSHAKE = 1024 * 1024
TIMEOUT = 10.0


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


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


class _Incomplete(Exception):
    pass


def parse_command(buffer: bytes) -> tuple[list[bytes], int]:
    """One client command from ``buffer``: (arguments, bytes used); raises _Incomplete if more is needed."""
    if not buffer:
        raise _Incomplete
    if buffer[:1] != b"*":  # inline command
        end = buffer.find(b"\n")
        if end < 0:
            raise _Incomplete
        return buffer[:end].rstrip(b"\r").split(), end + 1
    end = buffer.find(b"\r\n")
    if end < 0:
        raise _Incomplete
    count, pos, args = int(buffer[1:end]), end + 2, []
    if count < 0:
        raise ValueError("negative array length")
    for _ in range(count):
        end = buffer.find(b"\r\n", pos)
        if end < 0 or buffer[pos : pos + 1] != b"$":
            raise _Incomplete
        size = int(buffer[pos + 1 : end])
        if size < 0:  # else the parse would step backwards (a 0 length made the AUTH loop spin)
            raise ValueError("negative bulk length")
        start = end + 2
        if len(buffer) < start + size + 2:
            raise _Incomplete
        args.append(buffer[start : start + size])
        pos = start + size + 2
    return args, pos


def without_auth(args: list[bytes]) -> list[bytes]:
    """HELLO's arguments minus ``AUTH user pass`` (the protocol version and SETNAME stay)."""
    out, i = [], 0
    while i < len(args):
        if args[i].upper() == b"AUTH" and i + 2 < len(args):
            i += 3
            continue
        out.append(args[i])
        i += 1
    return out


async def local_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _upstream: Stream) -> bytes:
    buffer = b""
    while True:
        try:
            args, used = parse_command(buffer)
        except _Incomplete:
            if len(buffer) > MAX_HANDSHAKE:
                return buffer
            chunk = await reader.read(64 * 1024)
            if not chunk:
                return buffer
            buffer += chunk
            continue
        except ValueError:
            return buffer  # not RESP we understand: pass it on and let the server answer
        name = args[0].upper() if args else b""
        if name == b"AUTH":
            writer.write(b"+OK\r\n")
            await writer.drain()
            buffer = buffer[used:]
            continue
        if name == b"HELLO":
            return encode(*without_auth(args)) + buffer[used:]
        return buffer
