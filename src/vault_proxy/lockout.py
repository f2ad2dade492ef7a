"""Unlock brute-force throttle: after 5 failures, a lockout of 30 s x 2^min(n-5, 6) (cap 32 min)."""

from __future__ import annotations

import math
import time

FREE_FAILURES = 5
BASE_LOCKOUT_SECONDS = 30
MAX_DOUBLINGS = 6


class UnlockThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts, retry in {retry_after}s")
        self.retry_after = retry_after


class UnlockThrottle:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.failures = 0
        self._locked_until = 0.0

    def check(self) -> None:
        """Raise ``UnlockThrottled`` while a lockout runs."""
        remaining = self._locked_until - self._clock()
        if remaining > 0:
            raise UnlockThrottled(max(1, math.ceil(remaining)))

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= FREE_FAILURES:
            doublings = min(self.failures - FREE_FAILURES, MAX_DOUBLINGS)
            self._locked_until = self._clock() + BASE_LOCKOUT_SECONDS * 2**doublings

    def record_success(self) -> None:
        self.failures = 0
        self._locked_until = 0.0
