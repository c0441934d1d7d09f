"""A conversation switch between the two bytes of a sample, through the real pusher, the
fleet and the reader: the next conversation reads back from its own time."""

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
PAUSE_SECONDS = 3 * 3600


def test_the_conversation_after_a_switch_at_an_odd_byte_reads_back_from_its_own_time(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """Two seconds and half a sample, a switch, three hours of nothing, then the sample's
    other byte and two seconds more: each conversation holds its own audio, and the second
    starts one sample before its push (not three hours early, a gap the reader refuses to
    fill past AUDIOSYNC_MAX_GAP_FILL_SECONDS)."""
    uid = f"odd-switch-{uuid.uuid4().hex[:8]}"
    first, second = speech_like(2, RATE, seed=1), speech_like(2, RATE, seed=2)
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session(uid, "before", RATE, "standard")
    started = clock.now
    session.push(first + b"\x01", started)  # ends half a sample in
    session.switch_conversation("after")
    clock.now += PAUSE_SECONDS
    resumed = clock.now
    session.push(b"\x02" + second, resumed)  # its first byte completes that sample
    session.close()
    client.close()
    assert flush(ctx, session.session_id).failed is None

    reader = storage.StorageContext.from_settings(replace(ctx.settings, max_gap_fill_seconds=60))
    before = storage.download_merged_audio(uid, "before", fill_gaps=True, context=reader)
    after = storage.download_merged_audio(uid, "after", fill_gaps=True, context=reader)
    assert (before.start_us, before.sample_count) == (round(started * 1_000_000), 2 * RATE)
    sample_us = 1_000_000 // RATE
    assert (after.start_us, after.sample_count) == (
        round(resumed * 1_000_000) - sample_us,
        2 * RATE + 1,
    )
    assert before.missing == after.missing == ()
