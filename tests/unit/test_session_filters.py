"""The sessions' sans-I/O pieces (issue 15): Redis command filter, Postgres statement check, reply mask.

Each is fed bytes in arbitrary pieces (hypothesis picks the cuts); the result must not depend on them,
a refused command or statement must never reach the upstream, and local answers must keep their place.
"""

from __future__ import annotations

import base64
import errno
import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_proxy.server.errors import ApiError
from vault_proxy.server.handlers import sessions as handler
from vault_proxy.sessions import postgres_wire as wire
from vault_proxy.sessions.imap_filter import REFUSED_MECHANISM, ImapFilter
from vault_proxy.sessions.listener import Driver, OneShot, SessionLimit, SessionsClosed, TcpSessions
from vault_proxy.sessions.local_login import imap_login_password, sasl_plain_password
from vault_proxy.sessions.masking import LineFrames, PostgresFrames, ReplyMask
from vault_proxy.sessions.postgres_filter import PostgresFilter
from vault_proxy.sessions.redis_filter import REFUSED, RedisFilter
from vault_proxy.sessions.redis_replies import Markers, RespFrames
from vault_proxy.sessions.redis_wire import encode, split_inline
from vault_proxy.sessions.sql_check import refusal

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NONCE = b"0123456789abcdef01234567"
SECRET = "client-secret-0123"


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def feed_all(target, chunks: list[bytes]):
    up, client, close = b"", b"", None
    for chunk in chunks:
        step = target.feed(chunk)
        up, client, close = up + step.to_upstream, client + step.to_client, close or step.close
    return up, client, close


def parse_resp_commands(data: bytes) -> list[list[bytes]]:
    """The commands in well-formed RESP (what the filter forwards)."""
    commands, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        count, pos, args = int(data[pos + 1 : end]), end + 2, []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            size = int(data[pos + 1 : end])
            args.append(data[end + 2 : end + 2 + size])
            pos = end + 4 + size
        commands.append(args)
    return commands


# --- Redis -------------------------------------------------------------------------------------------------

NAMES = ["GET", "set", "Ping", "EVAL", "CLIENT", *REFUSED, "config", "aCl"]


@st.composite
def redis_command(draw) -> tuple[bytes, list[bytes]]:
    """One command as a client may send it (RESP or inline, any case, quoted) and its arguments."""
    name = draw(st.sampled_from(NAMES)).encode()
    args = [name, *draw(st.lists(st.sampled_from([b"k", b"requirepass", b"a b", b"\r\n", b"*"]), max_size=3))]
    if draw(st.booleans()) or any(b" " in a or b"\r" in a or b"*" in a for a in args):
        return encode(*args), args
    quoted = draw(st.booleans())
    line = b" ".join([b'"' + args[0] + b'"' if quoted else args[0], *args[1:]])
    return line + draw(st.sampled_from([b"\r\n", b"\n"])), args


def fake_redis(forwarded: bytes) -> bytes:
    """Answers each command with ``+NAME`` (an ECHO with its argument, as Redis would)."""
    replies = b""
    for args in parse_resp_commands(forwarded):
        if args[0] == b"ECHO":
            replies += b"$%d\r\n%s\r\n" % (len(args[1]), args[1])
        else:
            replies += b"+" + args[0].upper() + b"\r\n"
    return replies


@SETTINGS
@given(st.lists(redis_command(), min_size=1, max_size=8), st.lists(st.integers(0, 400), max_size=8),
       st.lists(st.integers(0, 400), max_size=8), st.booleans())  # fmt: skip
def test_redis_refused_commands_never_reach_redis_and_answers_keep_their_order(commands, cuts, reply_cuts, login):
    stream = b"".join(raw for raw, _ in commands)
    if login:
        stream = encode(b"AUTH", SECRET.encode()) + stream
    markers = Markers(NONCE)
    up, direct, close = feed_all(RedisFilter(markers, SECRET if login else None), pieces(stream, cuts))
    assert close is None
    forwarded = parse_resp_commands(up)
    assert not [c for c in forwarded if c[0].upper().decode() in REFUSED]
    assert SECRET.encode() not in up
    mask = ReplyMask([b"requirepass-value"], RespFrames(markers))
    seen = direct + b"".join(mask.feed(p) for p in pieces(fake_redis(up), reply_cuts)) + mask.flush()
    expected = b"+OK\r\n" if login else b""
    for _, args in commands:
        name = args[0].upper()
        expected += (b"-ERR '%s' is refused" % name) if name.decode() in REFUSED else b"+" + name
        expected += b" by vault-proxy on this session (redis_allowed_commands)\r\n" if name.decode() in REFUSED else b"\r\n"
    assert seen == expected


def test_redis_login_with_the_client_secret():
    first = RedisFilter(Markers(NONCE), SECRET)
    step = first.feed(b"PING\r\nAUTH user %s\r\nGET k\r\n" % SECRET.encode())
    assert step.to_client == b"-NOAUTH Authentication required.\r\n+OK\r\n" and step.to_upstream == encode(b"GET", b"k")
    hello = RedisFilter(Markers(NONCE), SECRET).feed(encode(b"HELLO", b"3", b"AUTH", b"default", SECRET.encode()))
    assert hello.to_upstream == encode(b"HELLO", b"3") and hello.to_client == b""
    wrong = RedisFilter(Markers(NONCE), SECRET).feed(b"AUTH guess\r\nGET k\r\n")
    assert wrong.close == "wrong client secret" and wrong.to_upstream == b"" and b"WRONGPASS" in wrong.to_client
    assert RedisFilter(Markers(NONCE), SECRET).feed(b"HELLO 3\r\n").to_client.startswith(b"-NOAUTH HELLO")


def test_redis_allowed_commands_widen_and_protocol_errors_close():
    assert RedisFilter(Markers(NONCE), allowed=["MONITOR"]).feed(b"monitor\r\n").to_upstream == encode(b"monitor")
    for bad in (b"*1\r\n:5\r\n", b"*x\r\n", b"*1\r\n$-3\r\n", b'GET "a\r\n', b"*1\r\n$01\r\nx\r\n"):
        step = RedisFilter(Markers(NONCE)).feed(bad)
        assert step.close == "protocol error" and step.to_client.startswith(b"-ERR Protocol error"), bad
    big = RedisFilter(Markers(NONCE)).feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + b"v" * 1000)
    assert big.to_upstream.endswith(b"v" * 1000)  # a large value streams through, not held


def test_inline_split_follows_redis():
    assert split_inline(b'  a "b c" \'d\' "\\x41\\n"  ') == [b"a", b"b c", b"d", b"A\n"]
    with pytest.raises(ValueError):
        split_inline(b'"a"b')


# --- reply mask --------------------------------------------------------------------------------------------

FORMS = [b"password", b"passw", b"T0ken"]


@SETTINGS
@given(st.lists(st.sampled_from([b"pass", b"word", b"password", b"x", b"pa", b"*", b"\r\n", b"T0k"]), max_size=20),
       st.lists(st.integers(0, 200), max_size=10))  # fmt: skip
def test_line_mask_is_length_preserving_across_any_split_and_never_holds_a_line_end(parts, cuts):
    data = b"".join(parts)
    mask = ReplyMask(FORMS, LineFrames())
    out = b"".join(mask.feed(p) for p in pieces(data, cuts))
    assert len(out) >= data.rfind(b"\n") + 1  # every complete line is out: nothing waits past a line end
    out += mask.flush()
    assert len(out) == len(data) and not any(f in line for line in out.split(b"\n") for f in FORMS)


@st.composite
def resp_reply(draw) -> bytes:
    text = draw(st.sampled_from([b"password", b"a password b", b"ok", b"", b"T0ken", b"12345"]))
    kind = draw(st.sampled_from(["+", "-", "$", "!", "=", ":", "*", "_", "$-1"]))
    if kind in "+-":
        return kind.encode() + text + b"\r\n"
    if kind in ("$", "!", "="):
        return b"%s%d\r\n%s\r\n" % (kind.encode(), len(text), text)
    return {":": b":12345\r\n", "*": b"*2\r\n", "_": b"_\r\n", "$-1": b"$-1\r\n"}[kind]


@SETTINGS
@given(st.lists(resp_reply(), min_size=1, max_size=10), st.lists(st.integers(0, 300), max_size=10))
def test_resp_mask_keeps_the_framing_and_flushes_at_every_reply_end(replies, cuts):
    data = b"".join(replies)
    mask = ReplyMask([*FORMS, b"12345"], RespFrames(Markers(NONCE)))
    out = b"".join(mask.feed(p) for p in pieces(data, cuts))
    assert len(out) == len(data) and b"password" not in out and b"T0ken" not in out  # nothing held at the end
    assert out.count(b"12345") == data.count(b"12345")  # digits-only forms are left alone (lengths, counts)
    assert [r[:1] for r in replies] == [out[i : i + 1] for i in _offsets(replies)]


def _offsets(replies: list[bytes]) -> list[int]:
    offsets, at = [], 0
    for reply in replies:
        offsets.append(at)
        at += len(reply)
    return offsets


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([b"D", b"T", b"Z"]), st.sampled_from([b"password", b"xT0ke", b"I", b""])),
                min_size=1, max_size=6), st.lists(st.integers(0, 300), max_size=10))  # fmt: skip
def test_postgres_mask_flushes_at_every_message_end(messages, cuts):
    data = b"".join(wire.message(kind, body) for kind, body in messages)
    mask = ReplyMask(FORMS, PostgresFrames())
    out = b"".join(mask.feed(p) for p in pieces(data, cuts))  # no flush: a reply ending in a form's start is out
    assert len(out) == len(data) and b"password" not in out
    assert [k for k, _ in pg_messages(out)] == [k for k, _ in messages]


# --- Postgres ----------------------------------------------------------------------------------------------

REFUSED_SQL = [
    "ALTER ROLE app PASSWORD 'x'", "alter user current_user with encrypted password 'x'",
    "ALTER/**/ROLE app -- c\n PASSWORD 'x'", "select 1; ALTER ROLE app PASSWORD NULL", "CREATE USER u PASSWORD 'x'",
    "create group g password 'x'", "/* /* nested */ */ alter role app password 'x'",
    "select 'a\\'; alter role app password ''x''; --'", "select $$ a $$; alter role app password $q$x$q$",
    "SELECT E'\\''; ALTER ROLE app PASSWORD 'x' --'",
]  # fmt: skip
ALLOWED_SQL = [
    "select 'alter role app password x'", "-- alter role app password 'x'\nselect 1",
    "select $$; alter role app password 'x'$$", "ALTER ROLE app SET search_path = public",
    "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password 'p')", "CREATE TABLE users (password text)",
    "select \"alter role app password\"",
]  # fmt: skip
READ_WRITE_SQL = [
    "SET default_transaction_read_only = off", "set session characteristics as transaction read write",
    "BEGIN READ WRITE", "start transaction isolation level serializable, read write",
    "select set_config('default_transaction_read_only', 'off', false)", "SET transaction_read_only TO 0",
    "update pg_settings set setting = 'off' where name = 'transaction_read_only'",
]  # fmt: skip


@pytest.mark.parametrize("sql", REFUSED_SQL)
def test_password_statements_are_refused(sql):
    assert refusal(sql.encode(), read_only=False) is not None


@pytest.mark.parametrize("sql", ALLOWED_SQL)
def test_other_statements_pass(sql):
    assert refusal(sql.encode(), read_only=True) is None


@pytest.mark.parametrize("sql", READ_WRITE_SQL)
def test_leaving_read_only_is_refused_only_in_read_only_sessions(sql):
    assert refusal(sql.encode(), read_only=True) is not None
    assert refusal(sql.encode(), read_only=False) is None
    assert refusal(b"show default_transaction_read_only", read_only=True) is None


def test_a_backslash_after_a_non_ascii_byte_is_ambiguous_and_refused_near_password():
    assert refusal(b"select E'\x81\\'; alter role app password 'x' --'", read_only=False) is not None


def pg_parse(name: bytes, sql: str, types: list[int]) -> bytes:
    return wire.message(b"P", name + b"\0" + wire.cstring(sql) + struct.pack("!h", len(types)) + b"".join(
        struct.pack("!I", t) for t in types))  # fmt: skip


@st.composite
def pg_stream(draw) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 6))):
        sql = draw(st.sampled_from(REFUSED_SQL + ALLOWED_SQL))
        kind = draw(st.sampled_from(["Q", "P", "B", "d"]))
        if kind == "Q":
            out += wire.message(b"Q", wire.cstring(sql))
        elif kind == "P":
            out += pg_parse(b"s1", sql, draw(st.sampled_from([[], [25]])))
        else:
            out += wire.message(kind.encode(), draw(st.binary(max_size=30)))
    return out


def pg_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("!I", data[pos + 1 : pos + 5])
        out.append((data[pos : pos + 1], data[pos + 5 : pos + 1 + length]))
        pos += 1 + length
    assert pos == len(data)
    return out


@SETTINGS
@given(pg_stream(), st.lists(st.integers(0, 600), max_size=10))
def test_postgres_filter_replaces_refused_statements_whatever_the_split(stream, cuts):
    up, client, close = feed_all(PostgresFilter(), pieces(stream, cuts))
    whole, _, _ = feed_all(PostgresFilter(), [stream])
    assert up == whole and client == b"" and close is None
    sent, received = pg_messages(stream), pg_messages(up)
    assert [k for k, _ in sent] == [k for k, _ in received]  # one message for one, in order
    for (kind, before), (_, after) in zip(sent, received, strict=True):
        refused = kind in (b"Q", b"P") and any(sql.encode() + b"\0" in before for sql in REFUSED_SQL)
        assert (b"RAISE EXCEPTION USING ERRCODE = '42501'" in after) if refused else after == before


def test_postgres_oversized_statement_is_refused_without_holding_it():
    big = pg_parse(b"named", "select '" + "x" * 5000 + "'", [25])
    up, _, _ = feed_all(PostgresFilter(max_statement=1000), pieces(big, [100, 2000, 4000]))
    (kind, payload), = pg_messages(up)
    assert kind == b"P" and payload.startswith(b"named\0DO ") and b"54000" in payload


# --- IMAP: no COMPRESS --------------------------------------------------------------------------------------

IMAP_COMMANDS = [b"a1 SELECT INBOX\r\n", b"a2 compress deflate\r\n", b"a3 APPEND INBOX {20}\r\nb COMPRESS DEFLATE\r\n\r\n",
                 b"a4 NOOP\r\n", b"a5 LOGIN {8+}\r\nCOMPRESS {3}\r\nabc\r\n", b"DONE\r\n"]  # fmt: skip


@SETTINGS
@given(st.lists(st.sampled_from(IMAP_COMMANDS), min_size=1, max_size=8), st.lists(st.integers(0, 300), max_size=8))
def test_imap_compress_is_rewritten_and_literals_pass_untouched(commands, cuts):
    stream = b"".join(commands)
    up, client, close = feed_all(ImapFilter(), pieces(stream, cuts))
    expected = b"".join(c.replace(b"compress deflate", b"COMPRESS " + REFUSED_MECHANISM) for c in commands)
    assert (up, client, close) == (expected, b"", None)


# --- local logins, caps --------------------------------------------------------------------------------------


def test_imap_and_sasl_passwords():
    assert imap_login_password(b'a1 LOGIN "us\\"er" "se\\\\cret"\r\n') == b"se\\cret"
    assert imap_login_password(b"a1 LOGIN {4}\r\nuser {6}\r\nsecret\r\n") == b"secret"
    assert imap_login_password(b"a1 LOGIN user secret\r\n") == b"secret"
    assert imap_login_password(b"a1 LOGIN user\r\n") is None
    assert sasl_plain_password(base64.b64encode(b"\0user\0secret")) == b"secret"
    assert sasl_plain_password(b"%%%") is None and sasl_plain_password(base64.b64encode(b"user")) is None


async def test_session_caps_per_token_and_in_all():
    sessions = TcpSessions()
    slots = [sessions.reserve(b"a", 2, 3), sessions.reserve(b"a", 2, 3)]
    with pytest.raises(SessionLimit, match="for this token"):
        sessions.reserve(b"a", 2, 3)
    slots.append(sessions.reserve(b"b", 2, 3))
    with pytest.raises(SessionLimit, match="on this server"):
        sessions.reserve(b"c", 2, 3)
    slots[0].release()
    slots[0].release()  # idempotent
    stale = sessions.reserve(b"c", 2, 3)
    await sessions.close()  # a lock: a session opened across it is not kept
    with pytest.raises(SessionsClosed):
        sessions.track(None, stale)  # type: ignore[arg-type]


async def test_a_failure_after_the_upstream_login_closes_that_connection(monkeypatch):
    closed = []
    writer = SimpleNamespace(close=lambda: closed.append(True))

    async def logged_in(*_args):
        return (None, writer), Driver()

    async def out_of_files(*_args):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(handler, "_open", logged_in)
    session = OneShot("redis", "svc", 30, audit=None)  # type: ignore[arg-type]
    monkeypatch.setattr(session, "start", out_of_files)
    with pytest.raises(ApiError) as failed:
        await handler._start(None, "redis", None, session, None)  # type: ignore[arg-type]
    assert failed.value.status == 503 and "too many open files" in failed.value.message
    assert closed and session.closed.is_set()
