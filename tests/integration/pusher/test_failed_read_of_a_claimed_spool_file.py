"""A session's own spooled file whose read fails once.

``Spool.claim`` renames ``.ready`` to ``.uploading`` and then reads it. When that read
fails (EMFILE with hundreds of websockets, EIO), the file stays ``.uploading`` while the
session still lists its ``.ready`` path; the next drain takes the missing ``.ready`` for
"another process took it", skips it, appends the later entries and forgets it: the
append mark then skips it for good when an adopter finds it. The only fault injected is
the failing read, at its exact line; Redis is a real valkey, stopped and restarted."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient
from backend_hooks.pusher import spool
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    RATE,
    T0,
    expected,
    noise,
    quick_client,
    settings_for,
    spool_files,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_failed_read_of_a_claimed_file_loses_no_entry(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool_dir = tmp_path / "spool"
    settings = settings_for(stack.env(), own_redis.url, spool_dir)
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    try:
        session = client.open_session("u1", "c1", RATE, "enhanced")
        own_redis.stop()
        for k in range(3):
            session.push(noise(CHUNK, seed=k), T0 + 5 * k)
        session.close()  # the end marker is spooled too
        assert session.spooled_entries == 4
        real_read = spool._read_regular_file  # the read in Spool.claim
        failed: list[Path] = []

        def read_bytes(path: Path) -> bytes:
            if path.suffix == ".uploading" and not failed:
                failed.append(path)
                raise OSError(errno.EMFILE, "Too many open files", str(path))
            return real_read(path)

        monkeypatch.setattr(spool, "_read_regular_file", read_bytes)
        own_redis.start()
        assert wait_for(lambda: bool(failed) and not session.spooled_entries, 10)
        assert wait_for(lambda: stream(own_redis.url, session.redis_keys) == expected(3), 5), (
            f"stream {stream(own_redis.url, session.redis_keys)}, "
            f"left {sorted(p.name for p in spool_files(spool_dir))}"
        )
        assert not spool_files(spool_dir)
    finally:
        client.close()
