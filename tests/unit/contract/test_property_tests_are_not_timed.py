"""Property tests (Hypothesis) judge what a function does, never how fast a busy machine ran
it: the profile of tests/conftest.py turns Hypothesis's timing checks off for every test,
also for those whose own ``@settings`` names only their example count."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_no_example_has_a_deadline() -> None:
    current = settings.default
    assert current is not None
    assert current.deadline is None
    assert HealthCheck.too_slow in current.suppress_health_check


@settings(max_examples=2)
@given(st.integers())
def test_an_example_slower_than_the_default_deadline_is_no_failure(number: int) -> None:
    time.sleep(0.25)  # Hypothesis's default deadline is 200 ms
