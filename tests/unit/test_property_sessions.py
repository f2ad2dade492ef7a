"""Property tests: malformed protocol input to every TCP session driver, from either side.

Each driver reads two peers: the local client (redis ``parse_command`` and the local handshakes, the
postgres startup framing, the IMAP command reader) and the upstream server during the vault's own login
(redis, SMTP, IMAP, Postgres replies, SCRAM). Whatever either sends, a driver may only raise the errors
its caller handles (``SessionError`` for a login: a 502; the protocol's own errors for the local side,
which end the session), and it must finish once the input ends: every read below is from an
``asyncio.StreamReader`` fed the bytes and then EOF, under a timeout, with a writer that yields on drain
and gives up after a runaway number of writes.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_proxy.server.errors import BadRequest
from vault_proxy.server.handlers import sessions as sessions_handler
from vault_proxy.sessions import imap, imap_local, postgres, postgres_local, redis, smtp
from vault_proxy.sessions import postgres_wire as wire
from vault_proxy.sessions.errors import SessionError
from vault_proxy.sessions.redis_filter import REFUSED, RedisFilter
from vault_proxy.sessions.redis_replies import Markers
from vault_proxy.sessions.scram import ScramClient, ScramError
from vault_proxy.vault.models import ImapAuth, PostgresAuth, RedisAuth, SmtpAuth

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIMEOUT = 5.0
TLS = ssl.create_default_context()


class RunawayWriter(Exception):
    """The code under test kept writing without reading: a loop that does not consume its input."""


class Writer:
    """A StreamWriter stand-in: records what is written; drain yields so timeouts can fire."""

    def __init__(self, max_writes: int = 5_000) -> None:
        self.data = bytearray()
        self.writes = 0
        self.closed = False
        self.max_writes = max_writes

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.writes > self.max_writes:
            raise RunawayWriter(f"{self.writes} writes")
        self.data += data

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, _name: str, default=None):
        return default

    def can_write_eof(self) -> bool:
        return False

    async def start_tls(self, *_args, **_kwargs):
        raise ConnectionResetError("no TLS in these tests")


_LOOP = asyncio.new_event_loop()  # one loop for every example (a new loop per example costs more than the test)


@pytest.fixture(scope="module", autouse=True)
def _close_loop():
    yield
    _LOOP.close()


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def run(factory, data: bytes, *expected: type[BaseException], writer: Writer | None = None):
    """Run ``factory(reader, writer)`` on ``data`` then EOF; return its result, or the expected error it raised."""

    async def main():
        return await asyncio.wait_for(factory(_reader(data), writer or Writer()), TIMEOUT)

    try:
        return _LOOP.run_until_complete(main())
    except TimeoutError:
        pytest.fail(f"did not finish within {TIMEOUT}s on input {data[:200]!r}")
    except expected as exc:
        return exc


def lines(pool: list[str]) -> st.SearchStrategy[bytes]:
    """Protocol-shaped input: plausible lines, random text and raw bytes, CRLF/LF/no line ends."""
    line = st.sampled_from(pool) | st.text(max_size=30) | st.sampled_from(["²²² x", "٢٥٠ x", "\x00", ""])
    ending = st.sampled_from(["\r\n", "\n", "", "\r"])
    text = st.lists(st.tuples(line, ending).map("".join), max_size=12).map("".join).map(str.encode)
    return st.one_of(text, st.binary(max_size=200), st.tuples(text, st.binary(max_size=40)).map(b"".join))


# --- Redis ---------------------------------------------------------------------------------------------

resp_args = st.lists(
    st.sampled_from([b"AUTH", b"auth", b"HELLO", b"3", b"PING", b"user", b"pw", b"SETNAME"]) | st.binary(max_size=8),
    max_size=5,
)


@st.composite
def resp_frames(draw) -> bytes:
    """RESP arrays whose declared lengths may lie (negative, short, long) and whose framing may be cut."""
    args = draw(resp_args)
    count = draw(st.sampled_from([len(args)]) | st.integers(-3, 8))
    out = b"*%d\r\n" % count
    for arg in args:
        size = draw(st.sampled_from([len(arg)]) | st.integers(-40, 40))
        out += b"$%d\r\n%s\r\n" % (size, arg)
    return out


redis_client_input = st.lists(resp_frames() | lines(["AUTH x", "PING", "HELLO 3 AUTH u p"]), max_size=4).map(b"".join)


@SETTINGS
@given(st.binary(max_size=120) | redis_client_input, st.sampled_from([None, "client-secret"]))
def test_redis_filter_consumes_any_client_input(data: bytes, client_secret: str | None) -> None:
    """Any input is forwarded, answered, refused or held as incomplete; nothing is lost or raises."""
    step = RedisFilter(Markers(), client_secret).feed(data)
    assert isinstance(step.to_upstream, bytes) and isinstance(step.to_client, bytes)
    if client_secret is not None:
        assert b"AUTH" not in step.to_upstream.upper()  # nothing of a login attempt reaches Redis


@SETTINGS
@given(st.lists(st.binary(max_size=20), min_size=1, max_size=6))
def test_redis_encoded_commands_are_forwarded_as_they_are(args: list[bytes]) -> None:
    frame = redis.encode(*args)
    step = RedisFilter(Markers()).feed(frame)
    name = args[0].upper()
    if name not in (b"AUTH", b"HELLO", *(n.encode() for n in REFUSED)):
        assert step.to_upstream == frame and step.to_client == b""


@SETTINGS
@given(lines(["+OK", "-ERR bad", "-WRONGPASS invalid", ":1", "$5", "+", "-"]))
def test_redis_login_against_any_server_answer_fails_as_a_session_error(data: bytes) -> None:
    auth = RedisAuth(type="redis", redis_host="h", redis_username="u", redis_password="pw-1234", redis_db=3)
    result = run(lambda r, w: redis.login((r, w), auth), data, SessionError)
    if isinstance(result, SessionError):
        assert "pw-1234" not in result.message


# --- Postgres ------------------------------------------------------------------------------------------


@st.composite
def pg_messages(draw) -> bytes:
    """Typed backend messages, mostly well framed, sometimes with a lying length."""
    kind = draw(st.sampled_from([b"R", b"E", b"S", b"K", b"Z", b"N", b"v"]) | st.binary(min_size=1, max_size=1))
    if kind == b"R":
        code = draw(st.sampled_from([0, 3, 5, 10, 11, 12]) | st.integers(0, 2**32 - 1))
        data = draw(st.sampled_from([b"SCRAM-SHA-256\0\0", b"abcd", b""]) | st.binary(max_size=40))
        payload = struct.pack("!I", code) + data
    elif kind in (b"E", b"S"):
        payload = draw(st.binary(max_size=40) | st.sampled_from([b"SERROR\0C28P01\0Mbad pw-1234\0\0", b"a\0b\0"]))
    else:
        payload = draw(st.binary(max_size=12))
    length = draw(st.sampled_from([len(payload) + 4]) | st.integers(0, 2**32 - 1))
    return kind + struct.pack("!I", length) + payload


pg_server_input = st.tuples(
    st.sampled_from([b"", b"N", b"S", b"X"]), st.lists(pg_messages(), max_size=6).map(b"".join), st.binary(max_size=20)
).map(b"".join)


@SETTINGS
@given(pg_server_input, st.sampled_from(["disable", "prefer", "require"]))
def test_postgres_login_against_any_server_answer_fails_as_a_session_error(data: bytes, tls_mode: str) -> None:
    auth = PostgresAuth(type="postgres", postgres_host="h", postgres_user="u", postgres_password="pw-1234",
                        postgres_db="d", postgres_tls=tls_mode)  # fmt: skip
    result = run(lambda r, w: postgres.login((r, w), auth, TLS), data, SessionError)
    if isinstance(result, SessionError):
        assert "pw-1234" not in result.message
    else:  # a login can only succeed with AuthenticationOk and then ReadyForQuery
        assert b"Z" in data


@SETTINGS
@given(pg_server_input)
def test_postgres_read_message_frames_or_refuses(data: bytes) -> None:
    result = run(lambda r, _w: wire.read_message(r), data, wire.ProtocolError, asyncio.IncompleteReadError)
    if isinstance(result, tuple):
        kind, payload = result
        assert len(kind) == 1 and len(payload) <= wire.MAX_HANDSHAKE_MESSAGE


@st.composite
def startup_packets(draw) -> bytes:
    """Frontend startup-phase packets: SSL/GSS/cancel requests, protocol versions, key/value pairs."""
    code = draw(st.sampled_from([wire.SSL_REQUEST, wire.GSSENC_REQUEST, wire.CANCEL_REQUEST, wire.PROTOCOL_3_0,
                                 wire.PROTOCOL_3_0 + 2, 2 << 16]) | st.integers(0, 2**32 - 1))  # fmt: skip
    keys = st.sampled_from(["user", "database", "options", "replication", "application_name", "_pq_.x"])
    values = st.sampled_from(["-c a=b --c-d=e\\ f", "true", "x", ""]) | st.text(max_size=12)
    pairs = draw(st.lists(st.tuples(keys | st.text(max_size=8), values), max_size=4))
    body = struct.pack("!I", code) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs) + b"\0"
    body = draw(st.sampled_from([body]) | st.binary(max_size=30))
    length = draw(st.sampled_from([len(body) + 4]) | st.integers(0, 20_000))
    return struct.pack("!I", length) + body


pg_client_input = st.lists(startup_packets(), max_size=3).map(b"".join) | st.binary(max_size=60)


@SETTINGS
@given(pg_client_input)
def test_postgres_read_startup_frames_or_refuses(data: bytes) -> None:
    result = run(lambda r, _w: wire.read_startup(r), data, wire.ProtocolError, asyncio.IncompleteReadError)
    if isinstance(result, tuple):
        assert isinstance(result[0], int) and isinstance(result[1], bytes)


@SETTINGS
@given(st.binary(max_size=200))
def test_postgres_pairs_and_error_fields_never_raise(payload: bytes) -> None:
    pairs = wire.parse_pairs(payload)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in pairs.items())
    assert all(len(code) == 1 for code in wire.error_fields(payload))


@SETTINGS
@given(st.text(max_size=60))
def test_postgres_options_parse_into_settings_whatever_they_say(options: str) -> None:
    settings_ = postgres.startup_settings({"options": options, "user": "u"})
    assert "user" not in settings_ or "user" in options


@SETTINGS
@given(pg_client_input)
def test_postgres_local_handshake_refuses_garbage_cleanly(data: bytes) -> None:
    state = postgres.UpstreamState(parameters={"server_version": "16.0"}, backend_key=b"12345678")
    local = postgres_local.PostgresLocal(state)
    step = local.feed(data)
    if local.wants_upstream:  # the upstream answers any set_config query with an error and ReadyForQuery
        step = local.feed_upstream(wire.message(b"E", b"C22023\0Mbad\0\0") + wire.message(b"Z", b"I"))
        assert step.close == "startup refused (SQLSTATE 22023)"
    assert local.logged_in or step.close is not None or not local.wants_upstream


@SETTINGS
@given(
    st.sampled_from(["", "x", "=", "abc=="]) | st.text(max_size=16),
    st.sampled_from(["c2FsdA==", "", "%%%"]) | st.text(max_size=12),
    st.sampled_from(["4096", "0", "-1", "²", "١٢", "99999999999", " 1"]) | st.text(max_size=6),
    st.text(max_size=30),
)
def test_scram_refuses_any_server_message_with_scram_error(extension: str, salt: str, iterations: str, final: str):
    client = ScramClient("pw-1234")
    client.first_message()
    server_first = f"r={client._nonce}{extension},s={salt},i={iterations}".encode()
    try:
        client.final_message(server_first)
    except ScramError:
        return
    with pytest.raises(ScramError):
        client.verify_server(final.encode())


# --- IMAP ----------------------------------------------------------------------------------------------

imap_server_lines = ["* OK ready", "* PREAUTH hi", "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR", "* BYE",
                     "* CAPABILITY IMAP4rev1 LOGINDISABLED", "v1 OK done", "v2 OK [CAPABILITY IMAP4rev1 IDLE] in",
                     "v2 NO [AUTHENTICATIONFAILED] bad pw-1234", "v3 OK", "+ go", "+", "v1 BAD"]  # fmt: skip


@SETTINGS
@given(lines(imap_server_lines), st.sampled_from(["pw-1234", "pw-ü-1234"]))
def test_imap_login_against_any_server_answer_fails_as_a_session_error(data: bytes, password: str) -> None:
    auth = ImapAuth(type="imap", imap_host="h", imap_user="u", imap_password=password, imap_tls="none")
    writer = Writer()
    result = run(lambda r, w: imap.login((r, w), auth, TLS), data, SessionError, writer=writer)
    # A server can only echo the password once it was sent (as is, or inside AUTHENTICATE PLAIN): from then on
    # every message must mask it. (Before that, "echoing" it needs a server that already knows it.)
    plain = base64.b64encode(f"\0u\0{password}".encode())
    if isinstance(result, SessionError) and (password.encode() in writer.data or plain in writer.data):
        assert password not in result.message


imap_client_input = lines(["a1 LOGIN u p", "a1 CAPABILITY", "a NOOP", "x ID nil", "a AUTHENTICATE PLAIN",
                           "a AUTHENTICATE PLAIN AGFhAGI=", "a AUTHENTICATE CRAM", "*", "a LOGIN {3}", "a LOGIN {3+}",
                           "a LOGIN {99999999}", "a STARTTLS", "a LOGOUT", "a SELECT INBOX"])  # fmt: skip


@SETTINGS
@given(imap_client_input)
def test_imap_local_framing_answers_or_refuses(data: bytes) -> None:
    local = imap_local.ImapLocal(["IMAP4rev1", "IDLE"], "client-secret")
    step = local.feed(data)
    assert step.to_upstream == b"" and not local.logged_in
    assert step.close in (None, "literal too large", "closed before logging in", "wrong client secret")


@SETTINGS
@given(imap_client_input, st.sampled_from([None, "client-secret"]))
def test_imap_local_handshake_finishes_on_any_client_input(data: bytes, client_secret: str | None) -> None:
    local = imap_local.ImapLocal(["IMAP4rev1", "IDLE"], client_secret)
    local.feed(data)  # the listener ends the session at end of input unless logged in
    if client_secret is not None and local.logged_in:
        assert client_secret.encode() in data or base64.b64encode(b"\0u\0" + client_secret.encode()) in data


# --- SMTP ----------------------------------------------------------------------------------------------

smtp_server_lines = ["220 hi", "220-hi", "250-mx", "250-AUTH PLAIN LOGIN", "250-AUTH LOGIN", "250-STARTTLS",
                     "250 ok", "250 AUTH LOGIN", "334 VXNlcm5hbWU6", "334 ", "235 ok", "535 bad pw-1234", "25",
                     "abc", "421 bye"]  # fmt: skip


@SETTINGS
@given(lines(smtp_server_lines))
def test_smtp_login_machine_ends_in_a_login_or_a_named_error(data: bytes) -> None:
    machine = smtp.SmtpLogin("u", "pw-1234", starttls=False)
    action = machine.feed(data)
    if action.waits:
        action = machine.eof()
    assert action.done or (action.error is not None and action.error.startswith("smtp "))


@SETTINGS
@given(lines(smtp_server_lines), st.sampled_from(["none", "starttls"]))
def test_smtp_login_against_any_server_answer_fails_as_a_session_error(data: bytes, mode: str) -> None:
    auth = SmtpAuth(type="smtp", smtp_host="h", smtp_user="u", smtp_password="pw-1234", smtp_tls=mode)
    result = run(lambda r, w: smtp.login((r, w), auth, TLS), data, SessionError)
    if isinstance(result, SessionError):
        assert "pw-1234" not in result.message


@SETTINGS
@given(
    lines(
        [
            "EHLO x",
            "HELO x",
            "AUTH PLAIN",
            "AUTH PLAIN AGEAYg==",
            "AUTH LOGIN",
            "AUTH LOGIN dQ==",
            "AUTH XOAUTH",
            "MAIL FROM:<a@b>",
            "RCPT TO:<c@d>",
            "DATA",
            "NOOP",
            "RSET",
            "QUIT",
            "STARTTLS",
            "VRFY x",
        ]
    ),
    st.sampled_from([None, "client-secret"]),
)
def test_smtp_local_handshake_finishes_on_any_client_input(data: bytes, client_secret: str | None) -> None:
    local = smtp.SmtpLocal(["8BITMIME", "SIZE 1000"], client_secret)
    step = local.feed(data)  # the listener ends the session at end of input unless logged in
    assert local.logged_in or step.close is not None or step.to_upstream == b""
    if client_secret is not None:
        assert not local.logged_in and step.to_upstream == b""  # no input above carries the secret


# --- the HTTP side: POST /{proto}/{name}/session?timeout= ----------------------------------------------


@SETTINGS
@given(st.text(max_size=6) | st.sampled_from(["²", "١٢", "0", "300", "301", "-1", " 5", "+5", "5_0"]))
def test_session_timeout_query_is_seconds_or_a_400(text: str) -> None:
    request = SimpleNamespace(query={"timeout": text})
    try:
        seconds = sessions_handler._timeout(request)  # type: ignore[arg-type]
    except BadRequest as exc:
        assert exc.status == 400
    else:
        assert 1 <= seconds <= sessions_handler.MAX_TIMEOUT
