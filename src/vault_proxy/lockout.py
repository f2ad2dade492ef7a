"""Unlock brute-force throttle: after 5 failures, a lockout of 30 s x 2^min(n-5, 6) (cap 32 min).

``n`` counts the failures of the last 24 hours: older ones are forgotten, so the back-off starts
from the beginning again after a quiet day. ``UnlockThrottles`` keeps one throttle per key (the
server uses the listener a request came in on), so failures at one address never lock out another.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

FREE_FAILURES = 5
BASE_LOCKOUT_SECONDS = 30
MAX_DOUBLINGS = 6
FAILURE_MEMORY_SECONDS = 24 * 3600

Clock = Callable[[], float]


class UnlockThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts, retry in {retry_after}s")
        self.retry_after = retry_after


def lockout_seconds(failures: int) -> int:
    """How long the ``failures``-th failure in a row locks unlocking out (0 below the free five)."""
    if failures < FREE_FAILURES:
        return 0
    return BASE_LOCKOUT_SECONDS * 2 ** min(failures - FREE_FAILURES, MAX_DOUBLINGS)


class UnlockThrottle:
    """The failures of one key and the lockout they earned."""

    def __init__(self, clock: Clock = time.monotonic, memory: float = FAILURE_MEMORY_SECONDS) -> None:
        self._clock = clock
        self._memory = memory
        self._failed_at: deque[float] = deque()
        self._locked_until = 0.0

    def _forget_old(self, now: float) -> None:
        while self._failed_at and now - self._failed_at[0] >= self._memory:
            self._failed_at.popleft()

    @property
    def failures(self) -> int:
        """Failures within the memory window (24 h), since the last success."""
        self._forget_old(self._clock())
        return len(self._failed_at)

    @property
    def idle(self) -> bool:
        """Nothing remembered and no lockout running: the throttle can be dropped."""
        now = self._clock()
        self._forget_old(now)
        return not self._failed_at and self._locked_until <= now

    def check(self) -> None:
        """Raise ``UnlockThrottled`` while a lockout runs."""
        remaining = self._locked_until - self._clock()
        if remaining > 0:
            raise UnlockThrottled(max(1, math.ceil(remaining)))

    def record_failure(self) -> int:
        """Count a failure; returns the lockout it started, in seconds (0: none)."""
        now = self._clock()
        self._forget_old(now)
        self._failed_at.append(now)
        seconds = lockout_seconds(len(self._failed_at))
        if seconds:
            self._locked_until = max(self._locked_until, now + seconds)
        return seconds

    def record_success(self) -> None:
        self._failed_at.clear()
        self._locked_until = 0.0


class UnlockThrottles:
    """One ``UnlockThrottle`` per key; a key's failures and successes never touch another key."""

    def __init__(self, clock: Clock = time.monotonic, memory: float = FAILURE_MEMORY_SECONDS) -> None:
        self._clock = clock
        self._memory = memory
        self._by_key: dict[Hashable, UnlockThrottle] = {}

    def __getitem__(self, key: Hashable) -> UnlockThrottle:
        throttle = self._by_key.get(key)
        if throttle is None:
            self._drop_idle()
            throttle = self._by_key[key] = UnlockThrottle(self._clock, self._memory)
        return throttle

    def __len__(self) -> int:
        return len(self._by_key)

    def _drop_idle(self) -> None:
        for key in [key for key, throttle in self._by_key.items() if throttle.idle]:
            del self._by_key[key]

    def check(self, key: Hashable) -> None:
        self[key].check()

    def record_failure(self, key: Hashable) -> int:
        return self[key].record_failure()

    def record_success(self, key: Hashable) -> None:
        self[key].record_success()

    def failures(self, key: Hashable) -> int:
        return self[key].failures
