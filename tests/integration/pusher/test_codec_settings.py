"""AUDIOSYNC_OPUS_BITRATES and AUDIOSYNC_OPUS_COMPLEXITY reach the session's encoder: the
chunks a session appends to the real Redis are exactly what ChunkEncoder makes with them."""

from __future__ import annotations

import time

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import connect
from backend_hooks.contract import container
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import ChunkEntry, parse_entry
from backend_hooks.contract.settings import Settings
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
RATE = 16000
T0 = float(int(time.time()))


def pushed_packets(settings: Settings, pcm: bytes) -> list[list[bytes]]:
    client = AudioSyncClient(settings)
    try:
        session = client.open_session("u-codec", "c-codec", RATE, "standard")
        session.push(pcm, T0)
        session.close()
    finally:
        client.executor.shutdown()
    store = WorkerStore(connect(settings.redis_url), settings.due_shards)
    chunks = []
    for entry_id, fields in store.read_raw(session.session_id, 100):
        entry = parse_entry(entry_id, fields)
        if isinstance(entry, ChunkEntry):
            [parsed] = container.parse_chunks(entry.data)
            chunks.append(parsed.packets)
    return chunks


@pytest.mark.parametrize(("bitrate", "complexity"), [(8000, 0), (16000, 10), (32000, 4)])
def test_the_session_encodes_with_the_settings(
    stack: StackInfo, redis_client: redis.Redis, bitrate: int, complexity: int
) -> None:
    pcm = speech_like(10, RATE, seed=3)
    settings = Settings.from_env(
        {
            **stack.env(),
            "AUDIOSYNC_OPUS_BITRATES": f"{RATE}:{bitrate}",
            "AUDIOSYNC_OPUS_COMPLEXITY": str(complexity),
        },
        role="pusher",
    )
    got = pushed_packets(settings, pcm)
    size = 2 * 5 * RATE
    encoder = ChunkEncoder(RATE, bitrate=bitrate, complexity=complexity)
    expected = [encoder.encode(pcm[i : i + size]) for i in range(0, len(pcm), size)]
    assert got == expected
    other = ChunkEncoder(RATE, bitrate=bitrate, complexity=(complexity + 5) % 11)
    assert got[0] != other.encode(pcm[:size])  # the complexity made the difference
