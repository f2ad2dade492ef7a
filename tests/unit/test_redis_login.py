"""The Redis upstream login as a sans-I/O machine: any split of the server's answers gives the same
outcome, and a failure names the step without ever quoting the stored password."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.sessions.redis import RedisLogin
from vault_proxy.vault.validation import parse_service

PASSWORD = "redis-Secret-77ab"


def auth(**extra):
    body = {"name": "r", "auth": {"type": "redis", "redis_host": "h", "redis_password": PASSWORD, **extra}}
    return parse_service(body).auth


def drive(machine: RedisLogin, answers: list[bytes], cuts: list[int]):
    """One server answer per command sent (a server answers what it got), each fed in pieces."""
    sent, action = [], machine.start()
    for answer in answers:
        if action.send:
            sent.append(action.send)
        if action.done or action.error is not None:
            return sent, action
        start = 0
        for end in sorted({min(c, len(answer)) for c in cuts} | {len(answer)}):
            action = machine.feed(answer[start:end])
            start = end
            if not action.waits:
                break
    if action.send:
        sent.append(action.send)
    if action.waits:  # the server said nothing more: it hung up
        action = machine.eof()
    return sent, action


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=6))
def test_auth_then_select_in_any_split(cuts):
    sent, action = drive(RedisLogin(auth(redis_db=3, redis_username="alice")), [b"+OK\r\n", b"+OK\r\n"], cuts)
    assert action.done and action.error is None
    assert sent[0] == b"*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$17\r\n" + PASSWORD.encode() + b"\r\n"
    assert sent[-1] == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"


@settings(max_examples=200, deadline=None)
@given(reply=st.binary(max_size=80), cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6))
def test_any_answer_ends_in_done_or_a_named_error_never_the_password(reply, cuts):
    _, action = drive(RedisLogin(auth()), [reply + b" " + PASSWORD.encode() + b"\r\n"], cuts)
    assert action.done or action.error is not None
    if action.error is not None:
        assert action.error.startswith("redis auth failed") and PASSWORD not in action.error


def test_a_server_that_hangs_up_is_a_named_error():
    _, action = drive(RedisLogin(auth()), [], [])
    assert action.error == "redis auth failed: the server closed the connection"
