"""A session whose timestamps are hours old (a device syncing audio it recorded offline),
pushed through the real pusher, flushed into the GCS emulator and read back: a stray
implausible timestamp among them does not move its audio."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from tests.integration.flushing import FakeClock, flush
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
RATE = 8000
OFFLINE_SECONDS = 2 * 3600


@pytest.mark.parametrize("stray", [1, 0], ids=["in-the-middle", "as-the-first-push"])
def test_a_stray_zero_timestamp_in_offline_audio_reads_back_as_long_as_the_audio(
    ctx: WorkerContext, clock: FakeClock, stray: int
) -> None:
    """5 s, 1 s and 5 s of audio, all recorded two hours ago, one of them stamped 0.0 (the
    second, or the first push): 11 s read back as 11 s (placed by the unshifted pusher's
    clock, the 0.0 second read back as 7,201 s)."""
    uid, cid = f"offline-{uuid.uuid4().hex[:8]}", "conv"
    recorded = clock.now - OFFLINE_SECONDS
    seconds = (1, 5, 5) if stray == 0 else (5, 1, 5)
    audio = [speech_like(length, RATE, seed=seed) for seed, length in enumerate(seconds)]
    starts = [recorded, recorded + seconds[0], recorded + seconds[0] + seconds[1]]
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session(uid, cid, RATE, "standard")
    for i, pcm in enumerate(audio):
        session.push(pcm, 0.0 if i == stray else starts[i])
    session.close()
    client.close()
    assert session.implausible_timestamps == 1
    assert flush(ctx, session.session_id).failed is None

    # A gap longer than a minute is refused rather than filled (the bug's 2 h of zeros).
    reader = storage.StorageContext.from_settings(replace(ctx.settings, max_gap_fill_seconds=60))
    merged = storage.download_merged_audio(uid, cid, fill_gaps=True, context=reader)
    assert merged.sample_count == 11 * RATE
    assert merged.start_us == round(recorded * 1_000_000)
    assert merged.missing == () and merged.skipped == ()
