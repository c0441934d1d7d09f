"""A pusher shutting down right after an outage appends what it spooled once Redis
answers again within AUDIOSYNC_CLOSE_SECONDS, instead of leaving it for a next process
on the same spool (a spool that dies with its pod has none): ``client.close()`` waits out
the open breaker and its trial succeeds. A real valkey stopped and started again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient
from tests.integration.pusher.pusher_outage import (
    noise,
    quick_client,
    settings_for,
    spool_files,
    stream,
)

pytestmark = pytest.mark.integration
RATE = 8000
CHUNK = 5 * RATE


def test_a_client_closing_right_after_an_outage_appends_what_it_spooled(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    settings = settings_for(
        stack.env(),
        own_redis.url,
        spool_dir,
        AUDIOSYNC_BREAKER_SECONDS="8",  # still open when the client closes
        AUDIOSYNC_CLOSE_SECONDS="30",
    )
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    session = client.open_session("u1", "c1", RATE, "enhanced")
    t0 = float(int(time.time()))
    own_redis.stop()
    for k in range(3):
        session.push(noise(CHUNK, seed=k), t0 + 5 * k)  # the first fails: the breaker opens
    session.close()
    assert session.spooled_entries == 4  # 3 chunks and the end marker
    own_redis.start()
    client.close()
    assert stream(own_redis.url, session.redis_keys) == [
        *(("chunk", seq, CHUNK) for seq in range(3)),
        ("end", -1, 0),
    ]
    assert not spool_files(spool_dir)
