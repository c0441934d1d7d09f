"""AUDIOSYNC_REDIS_STALL_SECONDS: how long a pusher thread waits for one Redis call."""

from __future__ import annotations

import pytest

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings


def test_the_default_wait_for_redis_fits_in_the_default_close_budget() -> None:
    settings = Settings.from_env({}, role="pusher")
    assert settings.redis_stall_seconds == 1.0
    assert settings.redis_stall_seconds < settings.close_seconds


@pytest.mark.parametrize(("stall", "close"), [("1", "1"), ("12", "10"), ("3", "2.5")])
def test_a_wait_for_redis_that_fills_the_close_budget_is_refused(stall: str, close: str) -> None:
    """A close waits that long for Redis before it spools its tail: within its budget."""
    env = {"AUDIOSYNC_REDIS_STALL_SECONDS": stall, "AUDIOSYNC_CLOSE_SECONDS": close}
    refused = r"AUDIOSYNC_REDIS_STALL_SECONDS.*AUDIOSYNC_CLOSE_SECONDS"
    with pytest.raises(ConfigError, match=refused):
        Settings.from_env(env, role="pusher")
