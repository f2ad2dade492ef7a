"""Unlock lockout: schedule, 24 h forgetting, per-listener isolation; ``--listen`` parsing and matching."""

from __future__ import annotations

import pytest

from vault_proxy.lockout import (
    FAILURE_MEMORY_SECONDS,
    UnlockThrottle,
    UnlockThrottled,
    UnlockThrottles,
    lockout_seconds,
)
from vault_proxy.server.config import ConfigError, ListenerIndex, ServerConfig, parse_listen

DAY = 24 * 3600


class Clock:
    def __init__(self) -> None:
        self.now = 50_000.0

    def __call__(self) -> float:
        return self.now


def retry_after(throttle) -> int | None:
    try:
        throttle.check()
    except UnlockThrottled as exc:
        return exc.retry_after
    return None


def fail_until_locked(throttle: UnlockThrottle, clock: Clock, failures: int) -> int | None:
    """``failures`` failures, each after the previous lockout ran out; the last one's Retry-After."""
    for _ in range(failures):
        clock.now += retry_after(throttle) or 0
        throttle.check()
        throttle.record_failure()
    return retry_after(throttle)


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, 0), (4, 0), (5, 30), (6, 60), (7, 120), (8, 240), (9, 480), (10, 960), (11, 1920), (12, 1920), (40, 1920)],
)
def test_schedule_30s_doubling_capped_at_32_minutes(failures, seconds):
    assert lockout_seconds(failures) == seconds
    clock = Clock()
    assert fail_until_locked(UnlockThrottle(clock), clock, failures) == (seconds or None)


def test_record_failure_returns_the_lockout_it_started():
    throttle = UnlockThrottle(Clock())
    assert [throttle.record_failure() for _ in range(6)] == [0, 0, 0, 0, 30, 60]


def test_retry_after_counts_down_and_rounds_up():
    clock = Clock()
    throttle = UnlockThrottle(clock)
    for _ in range(5):
        throttle.record_failure()
    with pytest.raises(UnlockThrottled, match=r"^too many attempts, retry in 30s$"):
        throttle.check()
    clock.now += 10.5
    assert retry_after(throttle) == 20  # 19.5 s left
    clock.now += 19.4
    assert retry_after(throttle) == 1  # never "retry in 0s"
    clock.now += 0.1
    assert retry_after(throttle) is None


def test_success_resets_the_counter():
    clock = Clock()
    throttle = UnlockThrottle(clock)
    fail_until_locked(throttle, clock, 7)
    clock.now += 120
    throttle.record_success()
    assert throttle.failures == 0 and retry_after(throttle) is None
    assert [throttle.record_failure() for _ in range(5)] == [0, 0, 0, 0, 30]  # the schedule starts over


# --------------------------------------------------------------------------- 24 h forgetting


def test_failures_older_than_24h_are_forgotten():
    clock = Clock()
    throttle = UnlockThrottle(clock)
    for _ in range(4):
        throttle.record_failure()
    assert throttle.failures == 4
    clock.now += FAILURE_MEMORY_SECONDS - 1
    assert throttle.failures == 4
    clock.now += 1
    assert throttle.failures == 0
    assert throttle.record_failure() == 0  # the 5th failure, a day later, is a first one


def test_backoff_resets_after_a_quiet_day():
    clock = Clock()
    throttle = UnlockThrottle(clock)
    assert fail_until_locked(throttle, clock, 11) == 1920
    clock.now += DAY + 1920
    assert retry_after(throttle) is None and throttle.failures == 0
    assert fail_until_locked(throttle, clock, 5) == 30  # not 32 min again


def test_window_slides_one_failure_at_a_time():
    """Only the failures of the last 24 h count: an old one dropping out lowers the next lockout."""
    clock = Clock()
    throttle = UnlockThrottle(clock)
    throttle.record_failure()  # t0
    clock.now += 12 * 3600
    fail_until_locked(throttle, clock, 5)  # 6 failures in the window: 60 s
    assert throttle.failures == 6
    clock.now = 50_000.0 + DAY  # the t0 failure is now 24 h old
    assert throttle.failures == 5
    assert throttle.record_failure() == 60  # 6th in the window, not the 7th ever


def test_a_running_lockout_is_not_shortened_by_forgetting():
    clock = Clock()
    throttle = UnlockThrottle(clock, memory=40)
    for _ in range(5):
        throttle.record_failure()
    throttle.record_failure()  # 60 s lockout
    clock.now += 45
    assert throttle.failures == 0  # forgotten (tiny memory) ...
    assert retry_after(throttle) == 15  # ... but the lockout it earned still runs


# --------------------------------------------------------------------------- per key


def test_keys_are_isolated():
    clock = Clock()
    throttles = UnlockThrottles(clock)
    for _ in range(5):
        throttles.record_failure("127.0.0.1:8390")
    with pytest.raises(UnlockThrottled):
        throttles.check("127.0.0.1:8390")
    throttles.check("unix:/run/vault.sock")  # the other listener is untouched
    assert throttles.failures("unix:/run/vault.sock") == 0
    throttles.record_failure("unix:/run/vault.sock")
    assert throttles.failures("127.0.0.1:8390") == 5
    assert throttles.failures("unix:/run/vault.sock") == 1


def test_success_resets_only_its_own_key():
    clock = Clock()
    throttles = UnlockThrottles(clock)
    for _ in range(6):
        throttles.record_failure("tcp")
    throttles.record_failure("unix")
    throttles.record_success("unix")
    assert throttles.failures("unix") == 0
    assert throttles.failures("tcp") == 6
    with pytest.raises(UnlockThrottled, match="retry in 60s"):
        throttles.check("tcp")


def test_idle_keys_are_dropped():
    clock = Clock()
    throttles = UnlockThrottles(clock)
    for key in ("a", "b", "c"):
        throttles.record_failure(key)
    throttles.record_success("b")
    clock.now += DAY
    throttles.check("d")  # creating a key drops the idle ones
    assert len(throttles) == 1


# --------------------------------------------------------------------------- --listen values


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("127.0.0.1:8390", "127.0.0.1:8390"),
        (":8390", "127.0.0.1:8390"),
        ("[::1]:8390", "[::1]:8390"),
        ("[0:0::1]:08390", "[::1]:8390"),
        ("LocalHost:8390", "localhost:8390"),
        ("unix:/run/vault.sock", "unix:/run/vault.sock"),
        ("unix:/run//x/../vault.sock", "unix:/run/vault.sock"),
    ],
)
def test_listen_values_are_normalised(value, name):
    assert parse_listen(value).name == name


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nonsense", "must be host:port or unix:/path.sock"),
        ("127.0.0.1", "must be host:port"),
        ("127.0.0.1:0", "must be host:port"),
        ("127.0.0.1:65536", "must be host:port"),
        ("127.0.0.1:http", "must be host:port"),
        ("my host:80", "must be host:port"),
        ("[::1:8390", "IPv6 as [::1]:port"),
        ("unix:", "path is empty"),
        ("unix:/" + "x" * 120, "longer than 107 bytes"),
    ],
)
def test_bad_listen_values(value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ServerConfig(listen=(value,)).validate()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("127.0.0.1:8390", "127.0.0.1:8390"), "--listen '127.0.0.1:8390' is given twice"),
        (("localhost:8390", "LOCALHOST:8390"), "--listen 'LOCALHOST:8390' is the same as 'localhost:8390'"),
        (("unix:/run/a.sock", "unix:/run/./a.sock"), "is the same as 'unix:/run/a.sock'"),
        (("127.0.0.1:8390", "0.0.0.0:8391"), "refusing to listen on 0.0.0.0 without TLS"),
        ((), "needs at least one address"),
    ],
)
def test_bad_listen_combinations(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ServerConfig(listen=values).validate()


def test_several_listeners_and_a_single_string():
    config = ServerConfig(listen=("127.0.0.1:8390", "unix:/run/op.sock", "[::1]:8390"))
    config.validate()
    assert [item.name for item in config.listeners] == ["127.0.0.1:8390", "unix:/run/op.sock", "[::1]:8390"]
    assert ServerConfig(listen="unix:/run/op.sock").listen == ("unix:/run/op.sock",)


# --------------------------------------------------------------------------- which listener


def test_listener_index_matches_bound_addresses():
    index = ListenerIndex()
    index.add(("127.0.0.1", 8390), "127.0.0.1:8390")
    index.add(("127.0.0.2", 8390), "127.0.0.2:8390")
    index.add(("::1", 8390, 0, 0), "[::1]:8390")
    index.add("/run/op.sock", "unix:/run/op.sock")
    index.add(("0.0.0.0", 9443), "0.0.0.0:9443")
    index.add(("::", 9443, 0, 0), "[::]:9443")
    assert index.name_of(("127.0.0.1", 8390)) == "127.0.0.1:8390"
    assert index.name_of(("127.0.0.2", 8390)) == "127.0.0.2:8390"
    assert index.name_of(("::1", 8390, 0, 0)) == "[::1]:8390"
    assert index.name_of("/run/op.sock") == "unix:/run/op.sock"
    assert index.name_of(b"/run/op.sock") == "unix:/run/op.sock"
    # A wildcard bind sees the interface's own address: the port (and family) decide, so choosing
    # another local address (127.0.0.3, 10.0.0.5 ...) does not give a fresh failure counter.
    assert index.name_of(("10.0.0.5", 9443)) == "0.0.0.0:9443"
    assert index.name_of(("127.0.0.3", 9443)) == "0.0.0.0:9443"
    assert index.name_of(("fe80::1%eth0", 9443, 0, 2)) == "[::]:9443"
    # Anything unknown shares one bucket.
    assert index.name_of(("127.0.0.3", 8390)) == ListenerIndex.UNKNOWN
    assert index.name_of(None) == ListenerIndex.UNKNOWN
    assert index.name_of("") == ListenerIndex.UNKNOWN
