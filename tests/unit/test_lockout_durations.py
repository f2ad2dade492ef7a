"""The unlock throttle schedule and the duration parser."""

from __future__ import annotations

import pytest

from vault_proxy.durations import parse_duration
from vault_proxy.lockout import UnlockThrottle, UnlockThrottled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lockout_after(failures: int) -> int:
    clock = Clock()
    throttle = UnlockThrottle(clock)
    for _ in range(failures):
        throttle.check()
        throttle.record_failure()
        try:
            throttle.check()
        except UnlockThrottled as exc:
            last = exc.retry_after
            clock.now += exc.retry_after  # wait it out before the next attempt
        else:
            last = 0
    return last


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(4, 0), (5, 30), (6, 60), (7, 120), (8, 240), (10, 960), (11, 1920), (12, 1920), (20, 1920)],
)
def test_schedule(failures, seconds):
    assert lockout_after(failures) == seconds


def test_success_resets():
    clock = Clock()
    throttle = UnlockThrottle(clock)
    for _ in range(5):
        throttle.record_failure()
    with pytest.raises(UnlockThrottled, match=r"too many attempts, retry in 30s"):
        throttle.check()
    clock.now += 31
    throttle.check()
    throttle.record_success()
    for _ in range(4):
        throttle.record_failure()
    throttle.check()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), ("500ms", 0.5), ("24h", 86400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-5m", "0s", "1h 30m", "2hours"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
