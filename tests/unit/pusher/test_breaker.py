"""backend_hooks.pusher.breaker: pure, with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.pusher.breaker import (
    ANSWERED,
    CLOSED,
    FAILED,
    HALF_OPEN,
    NO_VERDICT,
    OPEN,
    CircuitBreaker,
)

SOCKET_TIMEOUT = 5.0  # redis_store.SOCKET_TIMEOUT: how long a call to a stalled Redis lasts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker_of(
    clock: Clock, open_seconds: float = 5.0, *, max_calls: int = 4, stall: float = 1.0
) -> CircuitBreaker:
    return CircuitBreaker(open_seconds, clock, max_calls=max_calls, stall_seconds=stall)


def ticket(breaker: CircuitBreaker, *, force: bool = False) -> int:
    decision = breaker.begin(force=force)
    assert decision.ticket is not None, decision
    return decision.ticket


def fail_once(breaker: CircuitBreaker) -> None:
    breaker.end(ticket(breaker, force=True), FAILED)


def test_one_failure_opens_it_for_its_period_then_one_trial() -> None:
    clock = Clock()
    breaker = breaker_of(clock)
    assert breaker.state == CLOSED
    first, second = ticket(breaker), ticket(breaker)  # closed: calls go in parallel
    breaker.end(first, FAILED)
    assert breaker.state == OPEN and breaker.begin().ticket is None
    breaker.end(second, FAILED)  # already in flight: extends the period, no new trip
    clock.now += 4.9
    assert breaker.begin().ticket is None and not breaker.would_allow()
    clock.now += 0.1
    assert breaker.state == HALF_OPEN and breaker.would_allow()
    trial = ticket(breaker)  # one trial ...
    assert breaker.begin().ticket is None  # ... at a time
    breaker.end(trial, ANSWERED)
    assert breaker.state == CLOSED and breaker.begin().ticket is not None
    assert breaker.stats().trips == 1 and breaker.stats().failures == 2


def test_a_failed_trial_opens_it_again_and_counts_a_trip() -> None:
    clock = Clock()
    breaker = breaker_of(clock, 2.0)
    fail_once(breaker)
    clock.now += 2.0
    breaker.end(ticket(breaker), FAILED)
    assert breaker.state == OPEN and breaker.stats().trips == 2
    clock.now += 1.0
    assert breaker.begin().ticket is None


def test_the_half_open_trial_is_out_until_it_reports_however_long_its_call_lasts() -> None:
    """A period shorter than the socket timeout: a trial to a stalled Redis lasts a socket
    timeout, and no second caller may enter meanwhile, however many ask."""
    clock = Clock()
    breaker = breaker_of(clock, 0.3, max_calls=64, stall=10.0)
    fail_once(breaker)
    clock.now += 0.5
    trial = ticket(breaker)
    for _ in range(int(SOCKET_TIMEOUT / 0.1)):
        clock.now += 0.1
        assert breaker.begin().ticket is None
    assert breaker.stats().in_flight == 1
    breaker.end(trial, FAILED)  # its socket timeout: open again, one more trip
    assert breaker.state == OPEN and breaker.stats().trips == 2


def test_at_most_max_calls_are_in_flight_and_a_caller_waits_for_a_place() -> None:
    clock = Clock()
    breaker = breaker_of(clock, max_calls=2, stall=1.0)
    first, _ = ticket(breaker), ticket(breaker)
    clock.now += 0.25
    decision = breaker.begin()
    assert decision.ticket is None and not decision.stalled
    assert decision.wait == pytest.approx(0.75)  # until the oldest call counts as stalled
    breaker.end(first, ANSWERED)
    assert breaker.begin().ticket is not None  # a place was freed


def test_a_call_unanswered_past_the_stall_time_stops_every_other_caller() -> None:
    clock = Clock()
    breaker = breaker_of(clock, max_calls=8, stall=1.0)
    stalled = ticket(breaker)
    clock.now += 0.5
    slow = ticket(breaker)  # not yet a stall: another caller may enter
    clock.now += 0.5
    for force in (False, True):  # not even a forced call
        decision = breaker.begin(force=force)
        assert decision.ticket is None and decision.stalled and decision.wait == 0
    assert not breaker.would_allow(force=True)
    assert breaker.stats().stalls == 1 and breaker.stats().in_flight == 2
    breaker.end(stalled, FAILED)  # its socket timeout
    assert breaker.state == OPEN
    clock.now += 5.0
    assert breaker.begin().ticket is None  # half-open: the slow call is still out,
    breaker.end(slow, NO_VERDICT)  # and it says nothing about Redis
    assert breaker.state == HALF_OPEN and breaker.begin().ticket is not None


def test_a_forced_call_passes_the_open_breaker_not_its_places() -> None:
    clock = Clock()
    breaker = breaker_of(clock, max_calls=1)
    fail_once(breaker)
    forced = ticket(breaker, force=True)
    assert breaker.begin(force=True).ticket is None  # the one place is taken
    breaker.end(forced, ANSWERED)  # Redis answered: closed
    assert breaker.state == CLOSED


def test_a_refusal_of_one_command_counts_as_an_answer() -> None:
    clock = Clock()
    breaker = breaker_of(clock)
    fail_once(breaker)
    clock.now += 5.0
    breaker.end(ticket(breaker), ANSWERED)  # e.g. WRONGTYPE: Redis is there
    assert breaker.state == CLOSED


def test_a_trial_without_verdict_lets_the_next_caller_try() -> None:
    clock = Clock()
    breaker = breaker_of(clock)
    fail_once(breaker)
    clock.now += 5.0
    breaker.end(ticket(breaker), NO_VERDICT)
    assert breaker.state == HALF_OPEN and breaker.begin().ticket is not None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["begin", "force", "end", "tick"]),
            st.integers(0, 7),
            st.sampled_from([ANSWERED, FAILED, NO_VERDICT]),
        ),
        max_size=200,
    )
)
def test_never_more_calls_than_places_nor_more_than_one_trial(
    steps: list[tuple[str, int, str]],
) -> None:
    clock = Clock()
    breaker = breaker_of(clock, 0.3, max_calls=3, stall=1.0)
    out: dict[int, bool] = {}  # ticket -> entered while half-open, unforced (a trial)
    for action, pick, outcome in steps:
        if action == "tick":
            clock.now += pick * 0.1
        elif action == "end" and out:
            done = sorted(out)[pick % len(out)]
            del out[done]
            breaker.end(done, outcome)
        elif action in ("begin", "force"):
            half_open = breaker.state == HALF_OPEN
            decision = breaker.begin(force=action == "force")
            if decision.ticket is not None:
                out[decision.ticket] = half_open and action == "begin"
        assert len(out) <= 3 and breaker.stats().in_flight == len(out)
        assert sum(out.values()) <= 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        breaker_of(Clock(), 0)
    with pytest.raises(ValueError, match="at least 1"):
        breaker_of(Clock(), max_calls=0)
    with pytest.raises(ValueError, match="positive"):
        breaker_of(Clock(), stall=0)
    breaker = breaker_of(Clock())
    with pytest.raises(ValueError, match="not out"):
        breaker.end(7, ANSWERED)
    with pytest.raises(ValueError, match="outcome"):
        breaker.end(ticket(breaker), "maybe")
