"""The Redis session's client side, sans-I/O: local login with the client secret, then the command filter.

Fed the client's bytes in any pieces, it parses each command as redis-server would (``redis_wire``) and
decides, from the command name, what reaches Redis:

* ``AUTH`` is always answered here and never forwarded. While a client secret is required, the first
  ``AUTH [user] <secret>`` (or ``HELLO <ver> AUTH <user> <secret>``) logs the client in; anything else
  before it gets ``-NOAUTH``, and a wrong secret ``-WRONGPASS`` and the end of the session (one try).
  ``HELLO … AUTH u p`` goes upstream without its AUTH part.
* ``REFUSED`` commands (they can reveal or change the stored credential, or turn the session into
  something else) are dropped and answered with an error, unless the service allows them by name.
  Scripts stay allowed: Redis itself refuses these commands inside ``EVAL``/``FCALL`` (``noscript``).
* Everything else is forwarded byte for byte and streamed (a large value is never held whole); an
  inline command is re-encoded as RESP, so Redis runs exactly what was checked.

Once something was forwarded, a local answer must not overtake the answers still on their way: it is
sent upstream as an ``ECHO`` marker whose reply the reply mask swaps for it (see ``redis_replies``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..vault.models import REDIS_REFUSED_COMMANDS
from .redis_replies import Markers
from .redis_wire import BULK_MAX, COUNT_MAX, INLINE_MAX, ProtocolError, count_line, encode, split_inline
from .steps import Step, secret_matches

REFUSED = REDIS_REFUSED_COMMANDS
NAME_MAX = 64  # a longer first argument cannot be a command we look at: it streams through
COLLECT_MAX = 64 * 1024  # AUTH / HELLO are read whole, up to this size
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
QUIT_OK = b"+OK\r\n"
NOAUTH_HELLO = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH "
    b"<user> <pass> option can be used to authenticate the client and select the RESP protocol version at the "
    b"same time\r\n"
)
_START, _HEADER, _DATA = range(3)
_NAME, _COLLECT, _FORWARD, _DROP = range(4)


def without_auth(args: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """HELLO's arguments minus every ``AUTH user pass``; and the passwords those carried."""
    out, passwords, i = [], [], 0
    while i < len(args):
        if args[i].upper() == b"AUTH" and i + 2 < len(args):
            passwords.append(args[i + 2])
            i += 3
            continue
        out.append(args[i])
        i += 1
    return out, passwords


def refusal(name: str) -> bytes:
    return f"-ERR '{name}' is refused by vault-proxy on this session (redis_allowed_commands)\r\n".encode()


class RedisFilter:
    """One session's client → upstream direction; see the module docstring."""

    def __init__(self, markers: Markers, client_secret: str | None = None, allowed: Iterable[str] = ()) -> None:
        self._markers = markers
        self._secret = client_secret
        self._refused = REFUSED - {name.upper() for name in allowed}
        self._logged_in = client_secret is None
        self._forwarded = False  # from then on, local answers go upstream as markers (order)
        self._buf = bytearray()
        self._pos = 0
        self._state = _START
        self._mode = _NAME
        self._args_left = 0
        self._bulk_left = 0
        self._bulk_size = 0
        self._raw = bytearray()  # the command's bytes until its name decides
        self._args: list[bytes] = []
        self._collected = 0
        self._reply: bytes | None = None  # a dropped command's answer, sent once it is read whole
        self._up: list[bytes] = []  # this feed's output, joined once at its end
        self._client: list[bytes] = []
        self._close_reason: str | None = None
        self._closed = False

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    def feed(self, data: bytes) -> Step:
        if self._closed:
            return Step()
        self._buf += data
        try:
            while not self._closed and self._advance():
                pass
        except ProtocolError as exc:
            self._answer(b"-ERR Protocol error: %s\r\n" % str(exc).encode(), direct=True)
            self._close("protocol error")
        del self._buf[: self._pos]
        self._pos = 0
        step = Step(b"".join(self._up), b"".join(self._client), self._close_reason)
        self._up, self._client, self._close_reason = [], [], None
        return step

    # -- output -----------------------------------------------------------------------------------------

    def _forward(self, data: bytes | bytearray) -> None:
        if data:
            self._up.append(bytes(data))
            self._forwarded = True

    def _answer(self, reply: bytes, direct: bool = False) -> None:
        if direct or not self._forwarded:
            self._client.append(reply)
        else:
            self._forward(self._markers.command(reply))

    def _close(self, reason: str) -> None:
        self._closed = True
        self._close_reason = reason

    # -- framing (as networking.c reads it) --------------------------------------------------------------

    def _advance(self) -> bool:
        """Consume what the buffer allows; False when more input is needed."""
        buf, pos = self._buf, self._pos
        if self._state == _START:
            if pos >= len(buf):
                return False
            if buf[pos] != ord("*"):
                return self._inline()
            if self._logged_in and self._whole_command(buf, pos):
                return True
            parsed = count_line(buf, pos, "mbulk")
            if parsed is None:
                return False
            count, self._pos = parsed
            if count > COUNT_MAX:
                raise ProtocolError("invalid multibulk length")
            if count > 0:  # "*0" / "*-1" run nothing
                self._state, self._mode, self._args_left = _HEADER, _NAME, count
                self._raw[:] = buf[pos : self._pos]
                self._args, self._collected = [], 0
            return True
        if self._state == _HEADER:
            parsed = count_line(buf, pos, "bulk")
            if parsed is None:
                return False
            if buf[pos] != ord("$"):
                raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
            size, self._pos = parsed
            if not 0 <= size <= BULK_MAX:
                raise ProtocolError("invalid bulk length")
            self._state, self._bulk_size, self._bulk_left = _DATA, size, size + 2
            header = buf[pos : self._pos]
            if self._mode == _NAME and size > NAME_MAX:
                self._decide(None)
            if self._mode == _NAME:
                self._raw += header
            elif self._mode == _FORWARD:
                self._forward(header)
            elif self._mode == _COLLECT:
                self._collected += size
                if self._collected > COLLECT_MAX:
                    raise ProtocolError("AUTH or HELLO too large")
            return True
        return self._data()

    def _whole_command(self, buf: bytearray, pos: int) -> bool:
        """Fast path for a common command already read whole: forward it at once. Anything unusual (cut
        short, odd numbers, a name to look at) is left to the step-by-step reader, which decides alike."""
        end = buf.find(b"\r", pos)
        raw = bytes(buf[pos + 1 : end])
        if end < 0 or not raw.isdigit() or raw[:1] == b"0" or len(raw) > 9:
            return False
        at, name = end + 2, b""
        for index in range(int(raw)):
            end = buf.find(b"\r", at)
            raw = bytes(buf[at + 1 : end])
            if end < 0 or buf[at] != ord("$") or not raw.isdigit() or (raw[:1] == b"0" and raw != b"0"):
                return False
            size = int(raw)
            if size > BULK_MAX or end + 2 + size + 2 > len(buf):
                return False
            if index == 0:
                name = bytes(buf[end + 2 : end + 2 + size]).upper()
                if name in (b"AUTH", b"HELLO") or name.decode("latin-1") in self._refused:
                    return False
            at = end + 2 + size + 2
        self._forward(buf[pos:at])
        self._pos = at
        return True

    def _data(self) -> bool:
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if self._mode in (_FORWARD, _DROP):
            take = min(available, self._bulk_left)
            if self._mode == _FORWARD:
                self._forward(buf[pos : pos + take])
            self._pos += take
            self._bulk_left -= take
            if self._bulk_left:
                return False
        else:
            if available < self._bulk_left:
                return False
            value = bytes(buf[pos : pos + self._bulk_size])
            if self._mode == _NAME:
                self._raw += buf[pos : pos + self._bulk_left]
            self._pos += self._bulk_left
            if self._mode == _NAME:
                self._decide(value)
            else:
                self._args.append(value)
        self._args_left -= 1
        self._state = _HEADER if self._args_left else _START
        if not self._args_left:
            if self._mode == _COLLECT:
                self._command(self._args)
            elif self._mode == _DROP and self._reply is not None:
                self._local(self._reply)
            self._reply = None
        return True

    def _inline(self) -> bool:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\n", pos)
        if end < 0:
            if len(buf) - pos > INLINE_MAX:
                raise ProtocolError("too big inline request")
            return False
        line = bytes(buf[pos:end])
        self._pos = end + 1
        args = split_inline(line[:-1] if line.endswith(b"\r") else line)
        if args:
            self._command(args)
        return True

    # -- decisions -----------------------------------------------------------------------------------------

    def _decide(self, name_arg: bytes | None) -> None:
        """The first argument of a RESP command is known: forward, drop or read the rest whole."""
        name = name_arg.upper() if name_arg is not None else b""
        if name in (b"AUTH", b"HELLO"):
            self._mode = _COLLECT
            self._args = [name_arg or b""]
            return
        reply = self._verdict(name.decode("latin-1"))
        if reply is None:
            self._mode = _FORWARD
            self._forward(self._raw)
        else:
            self._mode, self._reply = _DROP, reply
        self._raw.clear()

    def _verdict(self, name: str) -> bytes | None:
        """None to forward; else the local answer (commands other than AUTH and HELLO)."""
        if not self._logged_in:
            return QUIT_OK if name == "QUIT" else NOAUTH
        if name in self._refused:
            return refusal(name)
        return None

    def _command(self, args: list[bytes]) -> None:
        """A whole command: inline, or an AUTH / HELLO read in full."""
        name = args[0].upper()
        if name == b"AUTH":
            self._auth(args)
        elif name == b"HELLO":
            self._hello(args)
        else:
            reply = self._verdict(name.decode("latin-1"))
            if reply is None:
                self._forward(encode(*args))
            else:
                self._local(reply)

    def _local(self, reply: bytes) -> None:
        """Answer a command that is not forwarded; a QUIT before the login ends the session."""
        self._answer(reply)
        if not self._logged_in and reply == QUIT_OK:
            self._close("closed before logging in")

    def _check(self, passwords: list[bytes]) -> bool:
        """Whether every password given is the client secret; a wrong one before the login ends the session."""
        secret = self._secret
        if secret is None or all([secret_matches(password, secret) for password in passwords]):
            self._logged_in = True
            return True
        self._answer(WRONGPASS)
        if not self._logged_in:
            self._close("wrong client secret")
        return False

    def _auth(self, args: list[bytes]) -> None:
        if len(args) not in (2, 3):
            self._answer(b"-ERR wrong number of arguments for 'auth' command\r\n")
        elif self._check([args[-1]]):
            self._answer(b"+OK\r\n")

    def _hello(self, args: list[bytes]) -> None:
        kept, passwords = without_auth(args)
        if not passwords and not self._logged_in:
            self._answer(NOAUTH_HELLO)
        elif self._check(passwords):
            self._forward(encode(*kept))
