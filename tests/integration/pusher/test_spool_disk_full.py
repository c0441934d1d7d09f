"""The spool's disk is full (ENOSPC) long before
AUDIOSYNC_SPOOL_MAX_BYTES. Order and exactly-once hold (checked here by identity, and by
hand on a 64 kB tmpfs), but the refusal said "the spool is full
(AUDIOSYNC_SPOOL_MAX_BYTES)" with the spool nearly empty and never named the disk error,
so an operator raises the wrong limit. The fault is injected at its exact line: the
fsync of a spool file (where a full disk surfaces with delayed allocation)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient, SpoolFullError
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    RATE,
    T0,
    expected,
    noise,
    quick_client,
    settings_for,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_full_disk_is_named_in_the_refusal_and_loses_nothing(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        stack.env(), own_redis.url, tmp_path / "spool", AUDIOSYNC_SESSION_BUFFER_SECONDS="10"
    )
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    real_fsync = os.fsync
    files = [0]

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".open"):
            files[0] += 1
            if files[0] > 2:  # the third spool file on: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    try:
        session = client.open_session("u1", "c1", RATE, "enhanced")
        own_redis.stop()
        monkeypatch.setattr(os, "fsync", fsync)  # only spool files fail (above)
        accepted = 0
        with pytest.raises(SpoolFullError) as refused:
            for k in range(10):
                session.push(noise(CHUNK, seed=k), T0 + 5 * k)
                accepted += 1
        assert "No space left on device" in str(refused.value), str(refused.value)
        monkeypatch.undo()
        own_redis.start()
        session.close()
        assert wait_for(lambda: stream(own_redis.url, session.redis_keys) == expected(accepted))
    finally:
        client.close()
