"""A dead pusher's spool files that do not check out are quarantined by the adopter, never
appended: one torn mid-write (cut short, still ``.open``) and one of the right length with
a block that never reached the disk (zeros: only its CRC-32 tells). The session's other
chunks, before and after them, are appended once each, in order."""

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


def test_damaged_spool_files_are_quarantined_with_their_reason_and_the_rest_appended(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    proc, keys = spooling_pusher("spool", 4, env)  # a pusher killed with 4 chunks spooled
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = sorted(spool_files(spool_dir))
    assert [p.suffix for p in files] == [".ready"] * 4
    torn = files[1].with_suffix(".open")  # cut short by the kill, mid-write
    data = files[1].read_bytes()
    files[1].unlink()
    torn.write_bytes(data[: len(data) // 2])
    holed = bytearray(files[2].read_bytes())  # a block of its payload never written
    middle = len(holed) // 2
    holed[middle : middle + 512] = bytes(512)
    files[2].write_bytes(bytes(holed))
    own_redis.start()

    client = AudioSyncClient(
        settings_for(stack.env(), own_redis.url, spool_dir),
        redis_client=quick_client(own_redis.url),
    )
    try:
        kept = [("chunk", 0, CHUNK), ("chunk", 3, CHUNK)]
        assert wait_for(lambda: stream(own_redis.url, keys) == kept)
        assert wait_for(lambda: not spool_files(spool_dir))
        stats = client.stats().spool
        assert stats is not None and stats.quarantined_files == 2
    finally:
        client.close()
    quarantine = spool_dir / "quarantine"
    reasons = sorted(p.read_text() for p in quarantine.glob("*.reason"))
    assert len(reasons) == 2
    assert "declares" in reasons[0] and "a torn write" in reasons[0]
    assert "fails its CRC-32" in reasons[1]
    # The bytes are kept as found, for an operator to look at.
    kept_bytes = {p.read_bytes() for p in quarantine.iterdir() if p.suffix != ".reason"}
    assert kept_bytes == {data[: len(data) // 2], bytes(holed)}
