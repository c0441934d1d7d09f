"""An audio file's duration when one new object holds two chunks with the
same start (the backfill puts a plain legacy chunk stored twice, a ``.bin`` and a legacy
``.opus`` of the same start, into one object: one chunk each).

``durations`` takes a new object's duration from its ``audiosync-samples`` metadata, the
sum over its chunks; ``chunk_span`` used the name's end only to lengthen a span (a gap),
never to shorten it, so the overlapping chunks counted twice: the audio file's duration
doubled by the backfill, though the merged audio did not change. Real GCS emulator and
Redis.
"""

from __future__ import annotations

import time
import uuid

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from tests.legacy_objects import write_legacy
from tests.legacy_opus import write_legacy_opus
from workers import backfill

pytestmark = pytest.mark.integration
NOW_US = time.time_ns() // 1000
T0 = float(NOW_US // 1_000_000 - 3 * 3600)


def test_a_chunk_stored_twice_counts_once_before_and_after_the_backfill(
    bf: backfill.Backfill,
) -> None:
    uid, cid = f"dur-{uuid.uuid4().hex[:8]}", "conv"
    pcm = speech_like(2, 16000, seed=5)
    write_legacy(bf.bucket, uid, cid, ".bin", [T0], [pcm])
    write_legacy_opus(bf.bucket, uid, cid, ".opus", T0, pcm)  # the same chunk, as Opus
    ctx = storage.StorageContext(bf.settings, bf.bucket, bf.keys)
    [before] = storage.create_audio_files_from_chunks(uid, cid, sample_rate=16000, context=ctx)
    assert before["duration"] == 2.0
    report = backfill.backfill_conversation(
        bf, uid, cid, now_us=NOW_US, delete=True, sample_rate=16000
    )
    assert len(report.written) == 1 and len(report.deleted) == 2, report.lines()
    merged = storage.download_merged_audio(uid, cid, context=ctx)
    [after] = storage.create_audio_files_from_chunks(uid, cid, context=ctx)
    assert merged.sample_count / merged.sample_rate == 2.0
    assert after["duration"] == before["duration"] == 2.0
