"""A dead owner's directory adopted while Redis failed.

The adopter renames ``<dead>`` to ``<dead>~<adopter>`` and appends its files; when that
append fails (Redis away, OOM, a stall) the files stay in the adopted directory. Nobody
drains them while the adopter lives: other processes see a live adopter, and the adopter
itself skips directories whose adopter is alive, itself included. Audited by identity."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    quick_client,
    settings_for,
    spool_env,
    spool_files,
    spooling_pusher,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_directory_adopted_while_redis_was_away_is_drained_once_it_is_back(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    proc, keys = spooling_pusher("spool", 3, env)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The next pusher starts while Redis is still away: its breaker is closed, so its
    # first maintenance pass adopts the dead directory and fails to append.
    settings = settings_for(stack.env(), own_redis.url, spool_dir)
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    try:
        assert wait_for(lambda: any("~" in p.name for p in spool_dir.iterdir()), 10)
        assert len(spool_files(spool_dir)) == 3  # nothing appended, nothing lost yet
        own_redis.start()
        chunks = [("chunk", seq, CHUNK) for seq in range(3)]
        # Lease 1 s, breaker 0.3 s, a maintenance pass a second: 5 s is plenty.
        assert wait_for(lambda: stream(own_redis.url, keys) == chunks, 5), (
            f"adopted files stranded: {sorted(p.name for p in spool_files(spool_dir))}"
        )
        assert wait_for(lambda: not spool_files(spool_dir), 5)
    finally:
        client.close()
