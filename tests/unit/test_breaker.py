"""backend_hooks.breaker: pure, with an injected clock."""

from __future__ import annotations

import pytest

from backend_hooks.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_failure_opens_it_for_its_period_then_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock)
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()
    breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == HALF_OPEN
    assert breaker.allow()  # one trial ...
    assert not breaker.allow()  # ... at a time
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()
    assert breaker.stats().trips == 1


def test_a_failed_trial_opens_it_again_and_counts_a_trip() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2.0, clock)
    breaker.record_failure()
    clock.now += 2.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == OPEN and breaker.stats().trips == 2
    clock.now += 1.0
    assert not breaker.allow()


def test_failures_while_open_extend_it_without_new_trips() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2.0, clock)
    breaker.record_failure()
    clock.now += 1.5
    breaker.record_failure()  # an append that was already in flight
    clock.now += 1.0
    assert breaker.state == OPEN  # 1.0 s after the last failure
    assert breaker.stats().trips == 1 and breaker.stats().failures == 2


def test_a_trial_that_never_reports_expires() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2.0, clock)
    breaker.record_failure()
    clock.now += 2.0
    assert breaker.allow()
    clock.now += 1.0
    assert not breaker.allow()
    clock.now += 1.0  # the trial's thread died: another caller may try
    assert breaker.allow()


def test_bad_period() -> None:
    with pytest.raises(ValueError, match="positive"):
        CircuitBreaker(0, Clock())
