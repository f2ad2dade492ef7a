"""The Postgres session's client → server direction after the login, sans-I/O: the statement check.

Messages are framed as the server frames them (type byte, length including itself). Simple ``Query``
and extended ``Parse`` messages are read whole and their SQL checked (``sql_check``); every other
message (Bind, Execute, CopyData, …) streams through unread. A refused statement is replaced by one the
server answers with our error (``DO … RAISE``): the ErrorResponse, the ReadyForQuery after it and the
transaction state all come from the server, in their place among pipelined queries, so the client
stays usable. A Query or Parse over ``MAX_STATEMENT`` cannot be checked and is refused the same way.
"""

from __future__ import annotations

import struct

from . import postgres_wire as wire
from .sql_check import raising_statement, refusal
from .steps import Step

MAX_STATEMENT = 16 * 1024 * 1024
NAME_PREFIX = 64 * 1024  # of an oversized Parse, what is read to keep its statement name
TOO_LARGE = ("54000", "refused by vault-proxy: a statement over 16 MiB cannot be checked")
_CHECKED = (b"Q", b"P")


def _replacement(kind: bytes, payload: bytes, code: str, message: str) -> bytes:
    """The Query or Parse to send instead: the same statement name and parameter types, our error."""
    statement = wire.cstring(raising_statement(code, message))
    if kind == b"Q":
        return wire.message(b"Q", statement)
    name, _, rest = payload.partition(b"\0")
    _query, _, types = rest.partition(b"\0")
    count = struct.unpack("!h", types[:2])[0] if len(types) >= 2 else 0
    # DO uses no parameter, so the server could not infer an undeclared type: declare each as text, so
    # that Bind (with the client's values) still succeeds and Execute raises our error.
    types = struct.pack("!h", count) + struct.pack("!I", 25) * count if 0 < count <= 65535 else struct.pack("!h", 0)
    return wire.message(b"P", name + b"\0" + statement + types)


def check_message(kind: bytes, payload: bytes, read_only: bool) -> bytes | None:
    """The message to send instead of this Query / Parse, or None to send it as it is."""
    if kind == b"Q":
        query = payload[:-1] if payload.endswith(b"\0") else None
    else:
        name_end = payload.find(b"\0")
        query_end = payload.find(b"\0", name_end + 1) if name_end >= 0 else -1
        query = payload[name_end + 1 : query_end] if query_end >= 0 else None
    if query is None or b"\0" in query:  # malformed: the server would refuse it; never let it through
        return _replacement(kind, payload, "08P01", "refused by vault-proxy: malformed message")
    reason = refusal(query, read_only)
    return None if reason is None else _replacement(kind, payload, *reason)


class PostgresFilter:
    """One session's client → server direction; see the module docstring."""

    logged_in = True  # the local handshake did the login

    def __init__(self, read_only: bool = False, max_statement: int = MAX_STATEMENT) -> None:
        self._read_only = read_only
        self._max = max_statement
        self._buf = bytearray()
        self._kind = b""
        self._left = 0  # body bytes of the current message still to come (streamed or skipped)
        self._skip = False
        self._body = bytearray()
        self._closed = False

    def feed(self, data: bytes) -> Step:
        step = Step()
        if self._closed:
            return step
        self._buf += data
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        while True:
            if self._left:  # inside a streamed or skipped body
                take = min(self._left, len(buf) - pos)
                if not take:
                    break
                if self._skip and len(self._body) < NAME_PREFIX:
                    self._body += buf[pos : pos + min(take, NAME_PREFIX - len(self._body))]
                elif not self._skip:
                    out.append(bytes(buf[pos : pos + take]))
                pos += take
                self._left -= take
                if not self._left and self._skip:
                    out.append(_replacement(self._kind, bytes(self._body), *TOO_LARGE))
                    self._skip, self._body = False, bytearray()
                continue
            if len(buf) - pos < 5:
                break
            kind = bytes(buf[pos : pos + 1])
            (length,) = struct.unpack("!I", buf[pos + 1 : pos + 5])
            if length < 4:
                step.to_client = wire.error_response("08P01", "invalid message length")
                step.close = "protocol error"
                self._closed = True
                break
            body = length - 4
            if kind in _CHECKED and body <= self._max:
                if len(buf) - pos < length + 1:
                    break
                payload = bytes(buf[pos + 5 : pos + 1 + length])
                instead = check_message(kind, payload, self._read_only)
                out.append(instead if instead is not None else bytes(buf[pos : pos + 1 + length]))
                pos += 1 + length
                continue
            self._kind, self._left, self._skip = kind, body, kind in _CHECKED
            if not self._skip:
                out.append(bytes(buf[pos : pos + 5]))
            pos += 5
        del buf[:pos]
        step.to_upstream = b"".join(out)
        return step
