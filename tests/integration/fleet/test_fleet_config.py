"""The fleet's processes refuse to start on a bad setting, with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("AUDIOSYNC_LEASE_SECONDS", "abc", id="not-a-number"),
        pytest.param("AUDIOSYNC_FLUSH_MAX_ATTEMPTS", "2.5", id="not-whole"),
        pytest.param("AUDIOSYNC_SWEEP_INTERVAL_SECONDS", "0", id="not-positive"),
        pytest.param("AUDIOSYNC_REDIS_URL", "localhost", id="not-a-url"),
        pytest.param("AUDIOSYNC_METRICS_PORT", "http", id="not-a-port"),
        pytest.param("AUDIOSYNC_LOG_FORMAT", "xml", id="unknown-log-format"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "beat"])
def test_bad_setting_stops_the_process(command: str, variable: str, value: str) -> None:
    env = {**os.environ, variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"audiosync: invalid setting: {variable}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("ENCRYPTION_SECRET", "short", id="pusher-and-reader-only"),
        pytest.param("AUDIOSYNC_CHUNK_SECONDS", "5.01", id="pusher-only"),
    ],
)
def test_a_setting_the_fleet_does_not_read_does_not_stop_it(variable: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "report"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
