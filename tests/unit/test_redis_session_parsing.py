"""The Redis session's local side without a client secret (``?client_secret=false``): the client's own
AUTH is answered here, HELLO loses its AUTH part, pipelined commands are kept in order."""

from __future__ import annotations

from vault_proxy.sessions.redis_filter import RedisFilter, without_auth
from vault_proxy.sessions.redis_replies import Markers
from vault_proxy.sessions.redis_wire import encode, split_inline


def test_inline_commands_split_as_redis_splits_them():
    assert split_inline(b"SET k  v") == [b"SET", b"k", b"v"]
    assert split_inline(b'SET "a b\\x41\\n" \'it\\\'s\'') == [b"SET", b"a bA\n", b"it's"]
    assert split_inline(b'c"onfig" get x') == [b"config", b"get", b"x"]


def test_hello_loses_only_its_auth_part():
    args = [b"HELLO", b"3", b"AUTH", b"user", b"pw", b"SETNAME", b"app"]
    assert without_auth(args) == ([b"HELLO", b"3", b"SETNAME", b"app"], [b"pw"])
    assert without_auth([b"HELLO", b"3"]) == ([b"HELLO", b"3"], [])


def test_client_auth_answered_locally_and_pipelined_bytes_kept():
    sent = encode(b"AUTH", b"anything") + encode(b"SELECT", b"1") + encode(b"GET", b"k")
    step = RedisFilter(Markers()).feed(sent)
    assert step.to_client == b"+OK\r\n" and step.close is None
    assert step.to_upstream == encode(b"SELECT", b"1") + encode(b"GET", b"k")


def test_hello_with_auth_forwarded_without_credentials():
    sent = encode(b"HELLO", b"3", b"AUTH", b"default", b"local-pw") + encode(b"PING")
    step = RedisFilter(Markers()).feed(sent)
    assert step.to_client == b"" and b"local-pw" not in step.to_upstream
    assert step.to_upstream == encode(b"HELLO", b"3") + encode(b"PING")
