"""Pure: the pusher's gate in front of Redis, a circuit breaker that also bounds the calls
in flight (time injected).

Every Redis call of the pusher asks ``begin`` first and reports its outcome with ``end``.
``begin`` answers: make the call (a ticket), skip Redis (the caller spools its entries or
keeps them in memory), or wait at most some seconds for a place, then ask again.

- **At most ``max_calls`` calls in flight**, whichever threads make them.
- **A call unanswered for ``stall_seconds`` stops the others**: Redis counts as stalled,
  and nobody else enters until a call in flight returns (or fails, which opens the
  breaker). So a stall holds at most the calls that entered before it was seen, never more
  than ``max_calls``, each for at most one socket timeout of the Redis client.
- **Closed, open, half-open.** A call that fails (unreachable, timed out, out of memory,
  ``redis_store.is_outage``) opens the breaker for ``open_seconds``: calls skip Redis.
  Then it is half-open: one trial call; the trial is out until it reports, however long
  the socket timeout is (so an ``open_seconds`` shorter than the socket timeout never lets
  a second caller in); its success closes the breaker, its failure opens it again. A call
  that Redis answered with a refusal of that one command (``WRONGTYPE``, a script error)
  shows that Redis answers: it counts as a success here.
- A *forced* call (a close the caller retries explicitly) is not stopped by the open state
  but counts among the calls in flight and is stopped by a stall like any other.

Tickets are handed back in ``finally`` by the one function that makes calls
(``Transport._call``, backend_hooks/pusher/transport.py): a ticket is never lost, so there is no
expiry.

Not thread-safe by itself: the caller serialises every method with one lock (held only for
these few instructions, released while a caller waits for a place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

#: Outcomes of a call, for ``end``.
ANSWERED = "answered"  # Redis answered: a success, or a refusal of that one command
FAILED = "failed"  # Redis did not: unreachable, timed out, full, loading (an outage)
NO_VERDICT = "no-verdict"  # the call raised something else: it says nothing about Redis


@dataclass(frozen=True)
class BreakerStats:
    state: str
    trips: int  # times it opened
    failures: int
    successes: int
    in_flight: int = 0  # calls in Redis now
    stalls: int = 0  # calls seen unanswered past stall_seconds


@dataclass(frozen=True)
class Decision:
    """What ``begin`` says: ``ticket`` set: go (then ``end(ticket, ...)``); else skip Redis,
    unless ``wait`` > 0: every place is taken, ask again within ``wait`` seconds."""

    ticket: int | None
    wait: float = 0.0
    stalled: bool = False  # skipped because a call in flight is stalled


SKIP = Decision(None)


class CircuitBreaker:
    def __init__(
        self,
        open_seconds: float,
        clock: Callable[[], float],
        *,
        max_calls: int,
        stall_seconds: float,
    ) -> None:
        if open_seconds <= 0:
            raise ValueError(f"open_seconds must be positive, got {open_seconds}")
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        if stall_seconds <= 0:
            raise ValueError(f"stall_seconds must be positive, got {stall_seconds}")
        self.open_seconds = open_seconds
        self.max_calls = max_calls
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._opened_at: float | None = None  # None: closed
        self._calls: dict[int, float] = {}  # ticket -> when the call began
        self._trial: int | None = None  # the half-open trial's ticket, while it is out
        self._stalled: set[int] = set()  # tickets already counted as stalled
        self._next_ticket = 0
        self.trips = self.failures = self.successes = self.stalls = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at < self.open_seconds:
            return OPEN
        return HALF_OPEN

    def begin(self, *, force: bool = False) -> Decision:
        """May this caller make a Redis call now? (see the module docstring)"""
        now = self._clock()
        trial = False
        if not force:
            state = self.state
            if state == OPEN or (state == HALF_OPEN and self._trial is not None):
                return SKIP
            trial = state == HALF_OPEN
        if self._calls:
            age = self._oldest_age(now)
            if age >= self.stall_seconds:
                return Decision(None, stalled=True)
            if len(self._calls) >= self.max_calls:
                return Decision(None, wait=self.stall_seconds - age)
        ticket = self._next_ticket
        self._next_ticket += 1
        self._calls[ticket] = now
        if trial:
            self._trial = ticket
        return Decision(ticket)

    def would_allow(self, *, force: bool = False) -> bool:
        """Whether ``begin`` would not skip now (it may still make the caller wait); takes
        no place. For callers that would do work (claim spool files) before the call."""
        if not force:
            state = self.state
            if state == OPEN or (state == HALF_OPEN and self._trial is not None):
                return False
        return not self._calls or self._oldest_age(self._clock()) < self.stall_seconds

    def _oldest_age(self, now: float) -> float:
        """How long the oldest call in flight has been out; counts it once as a stall."""
        ticket, began = min(self._calls.items(), key=lambda item: item[1])
        age = now - began
        if age >= self.stall_seconds and ticket not in self._stalled:
            self._stalled.add(ticket)
            self.stalls += 1
        return age

    def end(self, ticket: int, outcome: str) -> None:
        """The call of ``ticket`` returned with ``outcome`` (ANSWERED, FAILED, NO_VERDICT)."""
        if outcome not in (ANSWERED, FAILED, NO_VERDICT):
            raise ValueError(f"unknown outcome {outcome!r}")
        if self._calls.pop(ticket, None) is None:
            raise ValueError(f"ticket {ticket} is not out")
        self._stalled.discard(ticket)
        if ticket == self._trial:
            self._trial = None
        if outcome == ANSWERED:
            self.successes += 1
            self._opened_at = None
        elif outcome == FAILED:
            self.failures += 1
            if self._opened_at is None or self.state == HALF_OPEN:
                self.trips += 1
            self._opened_at = self._clock()

    def stats(self) -> BreakerStats:
        return BreakerStats(
            self.state,
            self.trips,
            self.failures,
            self.successes,
            in_flight=len(self._calls),
            stalls=self.stalls,
        )
