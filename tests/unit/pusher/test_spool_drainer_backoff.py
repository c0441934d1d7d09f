"""The spool drainer's wait between passes and its refused options (pure code)."""

from __future__ import annotations

import math

import pytest

from backend_hooks.pusher import spool_cli
from backend_hooks.pusher.spool_drainer import checked_seconds, next_wait


def test_the_wait_doubles_per_failed_pass_and_stops_at_the_max_backoff() -> None:
    waits = [next_wait(2.0, 60.0, failed) for failed in range(8)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert next_wait(2.0, 60.0, 10_000) == 60.0  # no overflow after a long outage


def test_the_wait_is_never_shorter_than_the_interval() -> None:
    assert next_wait(30.0, 5.0, 0) == 30.0
    assert next_wait(30.0, 5.0, 3) == 30.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, 3601.0])
def test_a_wait_out_of_bounds_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="--interval must be seconds in"):
        checked_seconds("--interval", value)


@pytest.mark.parametrize(
    "args",
    [
        ["drain", "--watch", "--interval", "0"],
        ["drain", "--watch", "--max-backoff", "nan"],
        ["drain", "--watch", "--metrics-port", "70000"],
        ["status", "--watch"],
    ],
)
def test_the_cli_refuses_a_bad_watch_option_with_a_usage_error(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        spool_cli.main(args)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err
