"""Pure: the pusher's circuit breaker in front of Redis (time injected).

Closed: every append goes to Redis. One failure (a refusal, a timeout, ``OOM``) opens it
for ``open_seconds``: appends skip Redis and go to the disk spool (or wait in memory), so a
stalled Redis holds at most one thread for one socket timeout instead of every thread of
the pool. After ``open_seconds`` it is half-open: one caller at a time may try Redis
(``allow`` hands out one trial); a success closes it, a failure opens it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass
class BreakerStats:
    state: str
    trips: int  # times it opened
    failures: int
    successes: int


class CircuitBreaker:
    """Not thread-safe by itself: the caller serialises ``allow``/``record_*`` (a lock
    held only for these few instructions, on pool threads, never on the event loop)."""

    def __init__(self, open_seconds: float, clock: Callable[[], float]) -> None:
        if open_seconds <= 0:
            raise ValueError(f"open_seconds must be positive, got {open_seconds}")
        self.open_seconds = open_seconds
        self._clock = clock
        self._opened_at: float | None = None  # None: closed
        self._trial_until: float | None = None  # a half-open trial is out until then
        self.trips = self.failures = self.successes = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at < self.open_seconds:
            return OPEN
        return HALF_OPEN

    def allow(self) -> bool:
        """May this caller try Redis now? In half-open, only one caller per period."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        now = self._clock()
        if self._trial_until is not None and now < self._trial_until:
            return False  # another caller's trial is out
        # A trial that never reported (its thread died) expires after one period.
        self._trial_until = now + self.open_seconds
        return True

    def record_success(self) -> None:
        self.successes += 1
        self._opened_at = self._trial_until = None

    def record_failure(self) -> None:
        self.failures += 1
        if self._opened_at is None or self.state == HALF_OPEN:
            self.trips += 1
        self._opened_at = self._clock()
        self._trial_until = None

    def stats(self) -> BreakerStats:
        return BreakerStats(self.state, self.trips, self.failures, self.successes)
