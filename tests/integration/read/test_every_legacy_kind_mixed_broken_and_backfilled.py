"""The whole read side on one conversation in the GCS emulator: every legacy kind, mixed,
broken and backfilled twice.

Every legacy kind (written byte for byte from LEGACY_FORMATS.md by tests/legacy_objects.py
and tests/legacy_opus.py, records sealed the old way) next to a new object the fleet
wrote, at 16 kHz, with a gap, an overlap, a chunk stored twice, a corrupt object and a
foreign user's object copied into the prefix; and an 8 kHz conversation read at 16 kHz.
The merged PCM is checked sample for sample where the formats are lossless and by length
and timing where they are not; the backfill runs twice on it and the second run changes
nothing; the audio reads the same after it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.contract import naming
from backend_hooks.contract.errors import DecryptionError
from backend_hooks.contract.settings import Settings
from backend_hooks.read.resample import resampled_length
from tests.integration.backfilling import SECRET, fleet_object
from tests.legacy_objects import write_legacy
from tests.legacy_opus import write_legacy_opus
from workers import backfill

pytestmark = pytest.mark.integration
NOW = time.time()
T0 = float(int(NOW)) - 3 * 3600  # older than the backfill's default --min-age
R = 16000


def at(seconds: float, rate: int = R) -> int:
    return 2 * round(seconds * rate)


def audio(seconds: float, seed: int, rate: int = R) -> bytes:
    return speech_like(seconds, rate, seed=seed)


def test_every_legacy_kind_mixed_broken_and_backfilled_twice(
    backfill_settings: Settings, backfill_reader: storage.StorageContext
) -> None:
    uid, cid = f"done-{uuid.uuid4().hex[:8]}", "conv"
    bucket, key = backfill_reader.bucket, SECRET.encode()
    a, b1, b2, c1, c2, twice = (audio(2, s) for s in (1, 2, 3, 4, 5, 6))
    write_legacy(bucket, uid, cid, ".bin", [T0], [a])  # 0-2 s
    write_legacy(bucket, uid, cid, ".batch.bin", [T0 + 2, T0 + 4], [b1, b2])  # 2-6
    write_legacy(bucket, uid, cid, ".batch.enc", [T0 + 6, T0 + 8], [c1, c2], secret=key)  # 6-10
    write_legacy(bucket, uid, cid, ".enc", [T0 + 10], [twice], secret=key, records_per_chunk=3)
    write_legacy(bucket, uid, cid, ".bin", [T0 + 10], [twice])  # 10-12, stored twice
    # 12-14: a corrupt .enc (one ciphertext byte flipped): its audio becomes a gap.
    write_legacy(bucket, uid, cid, ".enc", [T0 + 12], [audio(2, 7)], secret=key)
    corrupt = f"{naming.conversation_prefix(uid, cid)}{T0 + 12:.3f}.enc"
    data = bytearray(bucket.download(corrupt))
    data[100] ^= 0x01
    bucket.delete(corrupt)
    bucket.create_only(corrupt, bytes(data), content_type="x", metadata={})
    write_legacy(bucket, uid, cid, ".bin", [T0 + 14], [audio(2, 8)])  # 14-16
    # 16-18: silence (a gap); then legacy Opus, plain and sealed
    write_legacy_opus(bucket, uid, cid, ".opus", T0 + 18, audio(2, 9))  # 18-20
    write_legacy_opus(bucket, uid, cid, ".opus.enc", T0 + 20, audio(2, 10), secret=key)  # 20-22
    # A foreign user's sealed object, copied into this prefix at 22 s: not this user's key.
    foreign = write_legacy_opus(
        bucket, "someone-else", cid, ".opus.enc", T0 + 22, audio(2, 11), secret=key
    )
    copied = f"{naming.conversation_prefix(uid, cid)}{T0 + 22:.3f}.opus.enc"
    bucket.create_only(copied, bucket.download(foreign), content_type="x", metadata={})
    # A new object the fleet wrote at 23.5-26.5 s, overlapping the foreign one's span
    fleet_object(bucket, uid, cid, T0 + 23.5, audio(3, 12))
    write_legacy(bucket, uid, cid, ".bin", [T0 + 26], [audio(2, 13)])  # overlaps it by 0.5 s

    with pytest.raises(DecryptionError, match=rf"{corrupt}.*record"):
        storage.download_merged_audio(uid, cid, context=backfill_reader)

    def read() -> Any:
        return storage.download_merged_audio(uid, cid, skip_broken=True, context=backfill_reader)

    merged = read()
    assert sorted(s.path for s in merged.skipped) == [corrupt, copied]
    assert all(s.reason for s in merged.skipped)
    assert merged.sample_rate == R and merged.start_us == round(T0 * 1_000_000)
    assert merged.sample_count == round(28.0 * R)  # to the end of the last .bin
    pcm = merged.pcm
    assert type(pcm) is bytes and len(pcm) % 2 == 0
    # Lossless: sample for sample.
    assert pcm[: at(12)] == a + b1 + b2 + c1 + c2 + twice  # the twice-stored chunk once
    assert pcm[at(12) : at(14)] == bytes(at(2))  # the corrupt object: a gap
    assert pcm[at(14) : at(16)] == audio(2, 8)
    assert pcm[at(16) : at(18)] == bytes(at(2))  # the gap
    # Lossy (Opus): in place, by length and timing.
    assert pcm[at(18) : at(22)] != bytes(at(4))
    assert pcm[at(22) : at(23.5)] == bytes(at(1.5))  # the foreign object: a gap
    assert pcm[at(23.5) : at(26.5)] != bytes(at(3))  # the fleet's object, whole
    assert pcm[at(26.5) :] == audio(2, 13)[at(0.5) :]  # the overlap trimmed from the later

    listed = {o["path"]: o for o in storage.list_audio_chunks(uid, cid, context=backfill_reader)}
    assert all(o["duration"] is not None for p, o in listed.items() if p != copied)
    assert listed[f"{naming.conversation_prefix(uid, cid)}{T0 + 20:.3f}.opus.enc"][
        "duration"
    ] == pytest.approx(2.0)

    # The backfill, twice: the first compacts what reads, the second changes nothing.
    bf = backfill.Backfill.from_settings(backfill_settings)
    now_us = int(NOW * 1_000_000)
    first = backfill.backfill_conversation(bf, uid, cid, now_us=now_us)
    assert first.written, first.lines()
    assert {f.path for f in first.failed + first.skipped} >= {corrupt, copied}
    names_after_first = sorted(o.name for o in bucket.list(naming.conversation_prefix(uid, cid)))
    second = backfill.backfill_conversation(bf, uid, cid, now_us=now_us)
    assert second.written == [] and second.ops["put"] == 0 and second.deleted == []
    assert sorted(o.name for o in bucket.list(naming.conversation_prefix(uid, cid))) == (
        names_after_first
    )
    again = read()
    assert again.sample_count == merged.sample_count
    assert again.pcm[: at(18)] == pcm[: at(18)]  # the legacy copies still win their span


def new_object(bucket: Any, uid: str, cid: str, start: float, pcm: bytes, rate: int) -> None:
    """One standard chunk of a pusher session at ``rate``, stored as the fleet stores it."""
    from backend_hooks.contract import codec, container
    from backend_hooks.contract.container import ChunkInfo

    encoder = codec.ChunkEncoder(rate)
    info = ChunkInfo(uuid.uuid4().hex, 0, int(start * 1_000_000), rate, len(pcm) // 2)
    data = container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)
    path = naming.object_name(
        uid, cid, start_us=info.start_us, end_us=info.end_us, sealed=False, data=data
    )
    meta = {
        "audiosync-format": "1",
        "audiosync-rate": str(rate),
        "audiosync-samples": str(info.sample_count),
        "audiosync-session": info.session_id,
    }
    bucket.create_only(path, data, content_type="audio/ogg", metadata=meta)


def test_an_8k_conversation_read_at_16k_keeps_its_timeline(
    backfill_reader: storage.StorageContext,
) -> None:
    uid, cid = f"done8-{uuid.uuid4().hex[:8]}", "conv"
    new_object(backfill_reader.bucket, uid, cid, T0, audio(5, 21, 8000), 8000)
    new_object(backfill_reader.bucket, uid, cid, T0 + 10, audio(5, 22, 8000), 8000)
    own = storage.download_merged_audio(uid, cid, context=backfill_reader)
    assert own.sample_rate == 8000 and own.sample_count == 15 * 8000
    up = storage.download_merged_audio(uid, cid, sample_rate=16000, context=backfill_reader)
    assert up.sample_rate == 16000 and up.start_us == own.start_us
    assert up.sample_count == resampled_length(own.sample_count, 8000, 16000) == 15 * 16000
    assert up.pcm[at(5) : at(10)] == bytes(at(5))  # the gap, where it was
    for start in (0, 10):
        assert up.pcm[at(start) : at(start + 5)] != bytes(at(5))
    down = storage.download_merged_audio(uid, cid, sample_rate=8000, context=backfill_reader)
    assert down.pcm == own.pcm
