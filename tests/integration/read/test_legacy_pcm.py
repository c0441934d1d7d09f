"""Legacy raw-PCM objects (``.bin``, ``.enc``, ``.batch.bin``, ``.batch.enc``) in the real
GCS emulator, written byte for byte by tests/legacy_objects.py (LEGACY_FORMATS.md), next to
new objects made by the real pusher and flush: listed with kinds and exact durations,
merged sample-exactly at the inferred or given rate (docs/FORMATS.md §6).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import replace

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import naming
from backend_hooks.contract.errors import (
    DecryptionError,
    FormatError,
    InvalidInputError,
    SampleRateUnknownError,
)
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import FakeClock, flush
from tests.legacy_objects import legacy_bytes, write_legacy
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))  # new objects are flushed: the worker refuses far-off times
SECRET = b"legacy-pcm-integration-secret-0123456789"


def pcm(seconds: float, rate: int, seed: int, odd: bool = False) -> bytes:
    """Random PCM16LE (every byte matters in a sample-exact comparison)."""
    return random.Random(seed).randbytes(round(seconds * rate) * 2 + odd)


def _at(rate: int, seconds: float) -> int:
    """The byte offset of ``seconds`` into PCM16 at ``rate``."""
    return round(seconds * rate) * 2


def zeros(seconds: float, rate: int) -> bytes:
    return bytes(round(seconds * rate) * 2)


def _settings(ctx: WorkerContext) -> Settings:
    return replace(ctx.settings, encryption_secret=SECRET)


def _ids(prefix: str) -> tuple[str, str]:
    return f"{prefix}-{uuid.uuid4().hex[:8]}", "conv"


def test_every_legacy_kind_at_8k_is_inferred_and_merged_sample_exactly(
    ctx: WorkerContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, cid = _ids("legacy8k")
    rate = 8000
    a, b, c, d = (pcm(5, rate, s) for s in (1, 2, 3, 4))
    e, f = pcm(5, rate, 5, odd=True), pcm(5, rate, 6)  # e: 80,001 bytes
    g, h = pcm(2.5, rate, 7, odd=True), pcm(5, rate, 8)  # g: a short, odd last chunk
    put = ctx.bucket
    write_legacy(put, uid, cid, ".bin", [T0], [a])
    write_legacy(put, uid, cid, ".enc", [T0 + 5], [b], secret=SECRET, records_per_chunk=3)
    write_legacy(put, uid, cid, ".bin", [T0 + 5], [b])  # the same chunk stored twice
    write_legacy(put, uid, cid, ".batch.bin", [T0 + 10, T0 + 15], [c, d])
    write_legacy(put, uid, cid, ".batch.enc", [T0 + 20, T0 + 25], [e, f], secret=SECRET)
    write_legacy(put, uid, cid, ".bin", [T0 + 40], [g])  # after a 10 s gap
    write_legacy(put, uid, cid, ".bin", [T0 + 42.5], [h])
    prefix = naming.conversation_prefix(uid, cid)
    for stray in ("notes.txt", f"{T0:.3f}.wav"):
        put.create_only(prefix + stray, b"x", content_type="text/plain", metadata={})
    sctx = storage.StorageContext.from_settings(_settings(ctx))

    with caplog.at_level(logging.WARNING, logger="backend_hooks.storage"):
        listed = storage.list_audio_chunks(uid, cid, context=sctx)
    assert [(o["timestamp"] - T0, o["kind"], o["sample_rate"], o["duration"]) for o in listed] == [
        (0.0, "legacy-pcm", 8000, 5.0),
        (5.0, "legacy-pcm", 8000, 5.0),
        (5.0, "legacy-pcm", 8000, 5.0),
        (10.0, "legacy-pcm-batch", 8000, 10.0),
        (20.0, "legacy-pcm-batch", 8000, 10.0),
        (40.0, "legacy-pcm", 8000, 2.5),
        (42.5, "legacy-pcm", 8000, 5.0),
    ]
    assert [o["path"].rsplit(".", 1)[-1] for o in listed[1:3]] == ["bin", "enc"]
    unknown = storage.list_unknown_objects(uid, cid, context=sctx)
    assert sorted(u["path"] for u in unknown) == sorted(
        prefix + s for s in ("notes.txt", f"{T0:.3f}.wav")
    )
    assert "2 object(s) in its prefix are not chunk objects" in caplog.text

    merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.sample_rate == rate and merged.start_us == round(T0 * 1_000_000)
    want = a + b + c + d + e[:-1] + f + zeros(10, rate) + g[:-1] + h
    assert merged.pcm == want  # every byte, the duplicate once, odd bytes dropped
    assert storage.download_audio_chunks_and_merge(uid, cid, context=sctx) == want
    unfilled = storage.download_merged_audio(uid, cid, fill_gaps=False, context=sctx)
    assert unfilled.pcm == a + b + c + d + e[:-1] + f + g[:-1] + h

    # Selecting objects still infers from the whole conversation (one object alone could not).
    only = storage.download_merged_audio(uid, cid, [T0 + 42.5], context=sctx)
    assert only.pcm == h and only.sample_rate == rate

    # The caller's rate wins: the same bytes read as 16 kHz are half as long, the gaps longer.
    fast = storage.download_merged_audio(uid, cid, sample_rate=16000, context=sctx)
    assert fast.sample_rate == 16000
    assert fast.pcm[: len(a) + len(zeros(2.5, 16000)) + len(b)] == a + zeros(2.5, 16000) + b
    assert fast.sample_count == round(42.5 * 16000) + len(h) // 2  # h starts at 42.5 s
    listed16 = storage.list_audio_chunks(uid, cid, sample_rate=16000, context=sctx)
    assert [o["duration"] for o in listed16] == [2.5, 2.5, 2.5, 5.0, 5.0, 1.25, 2.5]


def _record(
    ctx: WorkerContext,
    clock: FakeClock,
    uid: str,
    cid: str,
    rate: int,
    pieces: list[tuple[bytes, float]],
) -> None:
    """Push ``pieces`` (PCM, start) through the real pusher, close, flush into new objects."""
    client = AudioSyncClient(_settings(ctx), clock=clock)
    session = client.open_session(uid, cid, rate, "enhanced")
    for data, start in pieces:
        session.push(data, start)
    session.close()
    result = flush(ctx, session.session_id)
    assert result.failed is None and result.objects_created >= 1, result
    client.close()


def test_16k_legacy_mixed_with_new_objects_gaps_overlaps_and_a_duplicate(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    uid, cid = _ids("legacy16k")
    rate = 16000
    a, b, x, z = (pcm(5, rate, s) for s in (11, 12, 13, 14))
    y = speech_like(5, rate, seed=15)
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0], [a])
    write_legacy(ctx.bucket, uid, cid, ".batch.enc", [T0 + 5], [b], secret=SECRET)
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + 10], [x])
    write_legacy(ctx.bucket, uid, cid, ".enc", [T0 + 27], [z], secret=SECRET)
    # New objects: x again (the same audio at the same time: played once), then y at
    # T0 + 25 after a gap, which z (at T0 + 27) overlaps by 3 s.
    _record(ctx, clock, uid, cid, rate, [(x, T0 + 10), (y, T0 + 25)])
    sctx = storage.StorageContext.from_settings(_settings(ctx))

    listed = storage.list_audio_chunks(uid, cid, context=sctx)
    kinds = [(o["timestamp"] - T0, o["kind"], o["sample_rate"]) for o in listed]
    assert ("opus" in {k for _, k, _ in kinds}) and {r for _, _, r in kinds} == {16000}
    assert [o["duration"] for o in listed if o["kind"] != "opus"] == [5.0, 5.0, 5.0, 5.0]

    for given in (None, 16000):
        merged = storage.download_merged_audio(uid, cid, sample_rate=given, context=sctx)
        assert merged.sample_rate == rate and merged.start_us == round(T0 * 1_000_000)
        assert merged.sample_count == 32 * rate  # to the end of z
        assert merged.pcm[: _at(rate, 15)] == a + b + x  # the legacy copy of x, lossless, once
        assert merged.pcm[_at(rate, 15) : _at(rate, 25)] == zeros(10, rate)
        assert merged.pcm[_at(rate, 25) : _at(rate, 30)] != zeros(5, rate)  # y, decoded from Opus
        assert (
            merged.pcm[_at(rate, 30) :] == z[_at(rate, 3) :]
        )  # z's first 3 s overlapped y: trimmed


def test_legacy_8k_next_to_new_16k_comes_out_at_one_rate_in_place(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """Several rates in one conversation: out at the highest (or at ``sample_rate``, the
    session's, at which raw PCM is read), the rest resampled (soxr) to exactly
    ``resampled_length`` samples at its own place on the timeline."""
    uid, cid = _ids("legacymix")
    first, second = pcm(5, 8000, 21), pcm(5, 8000, 22)
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0], [first])
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + 5], [second])
    _record(ctx, clock, uid, cid, 16000, [(speech_like(5, 16000, seed=23), T0 + 12)])
    sctx = storage.StorageContext.from_settings(_settings(ctx))
    listed = storage.list_audio_chunks(uid, cid, context=sctx)
    assert [o["sample_rate"] for o in listed] == [8000, 8000, 16000]

    up = storage.download_merged_audio(uid, cid, context=sctx)
    assert up.sample_rate == 16000 and up.sample_count == 17 * 16000
    assert up.pcm[_at(16000, 10) : _at(16000, 12)] == zeros(2, 16000)  # the gap, in place
    assert up.pcm[: _at(16000, 10)] != zeros(10, 16000)
    down = storage.download_merged_audio(uid, cid, sample_rate=8000, context=sctx)
    assert down.sample_rate == 8000 and down.sample_count == 17 * 8000
    assert down.pcm[: _at(8000, 10)] == first + second  # at its own rate: untouched
    assert down.pcm[_at(8000, 10) : _at(8000, 12)] == zeros(2, 8000)
    assert down.pcm[_at(8000, 12) :] != zeros(5, 8000)  # the 16 kHz object, resampled
    # Resampled, not re-timed: the 8 kHz audio at 16 kHz is the same signal at twice
    # the samples (compared where soxr's edges do not reach).
    from backend_hooks.read.resample import resample_pcm16

    mid = slice(_at(16000, 1), _at(16000, 4))
    assert up.pcm[mid] == resample_pcm16(first, 8000, 16000)[mid]


def test_a_rate_that_cannot_be_told_is_refused_and_an_explicit_one_reads(
    ctx: WorkerContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, cid = _ids("legacyone")
    one = pcm(5, 16000, 31)
    write_legacy(ctx.bucket, uid, cid, ".enc", [T0], [one], secret=SECRET)
    sctx = storage.StorageContext.from_settings(_settings(ctx))
    with caplog.at_level(logging.WARNING, logger="backend_hooks.storage"):
        [item] = storage.list_audio_chunks(uid, cid, context=sctx)
    assert (item["kind"], item["sample_rate"], item["duration"]) == ("legacy-pcm", None, None)
    assert f"conversation {cid} of user {uid}: cannot tell the sample rate" in caplog.text
    with pytest.raises(
        SampleRateUnknownError, match=rf"conversation {cid} of user {uid}.*1 legacy"
    ):
        storage.download_merged_audio(uid, cid, context=sctx)
    assert storage.download_audio_chunks_and_merge(uid, cid, sample_rate=16000, context=sctx) == one
    [item] = storage.list_audio_chunks(uid, cid, sample_rate=16000, context=sctx)
    assert item["duration"] == 5.0

    # Inconsistent spacing: a second chunk 2 s after a 5 s one (at 16 kHz or at 8 kHz).
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + 2], [pcm(5, 16000, 32)])
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + 7], [pcm(5, 16000, 33)])
    with pytest.raises(SampleRateUnknownError, match="inconsistent spacing"):
        storage.download_merged_audio(uid, cid, context=sctx)
    with pytest.raises(InvalidInputError, match="sample_rate 11025"):
        storage.download_merged_audio(uid, cid, sample_rate=11025, context=sctx)


def test_a_corrupt_legacy_object_is_an_error_naming_it_and_listing_survives(
    ctx: WorkerContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, cid = _ids("legacybad")
    chunks = [pcm(5, 8000, 40 + i) for i in range(4)]
    for i, chunk in enumerate(chunks[:3]):
        write_legacy(ctx.bucket, uid, cid, ".enc", [T0 + 5 * i], [chunk], secret=SECRET)
    prefix = naming.conversation_prefix(uid, cid)
    sctx = storage.StorageContext.from_settings(_settings(ctx))
    good = storage.download_merged_audio(uid, cid, context=sctx)
    assert good.pcm == b"".join(chunks[:3]) and good.sample_rate == 8000

    tampered = f"{prefix}{T0 + 5:.3f}.enc"
    original = ctx.bucket.download(tampered)
    data = bytearray(original)
    data[100] ^= 1
    ctx.bucket.delete(tampered)
    ctx.bucket.create_only(tampered, bytes(data), content_type="x", metadata={})
    with pytest.raises(DecryptionError, match=rf"{tampered}: sealed record 0"):
        storage.download_merged_audio(uid, cid, context=sctx)
    ctx.bucket.delete(tampered)
    ctx.bucket.create_only(tampered, original, content_type="x", metadata={})

    truncated = f"{prefix}{T0 + 15:.3f}.batch.enc"
    whole = legacy_bytes(".batch.enc", chunks[3:], secret=SECRET, uid=uid)
    ctx.bucket.create_only(truncated, whole[:-7], content_type="x", metadata={})
    with caplog.at_level(logging.WARNING, logger="backend_hooks.storage"):
        listed = storage.list_audio_chunks(uid, cid, context=sctx)
    assert [(o["path"], o["duration"]) for o in listed if o["duration"] is None] == [
        (truncated, None)
    ]
    assert f"{truncated}: sealed record 0 (byte 0): truncated" in caplog.text
    with pytest.raises(FormatError, match=rf"{truncated}: sealed record 0 \(byte 0\): truncated"):
        storage.download_merged_audio(uid, cid, context=sctx)
    ctx.bucket.delete(truncated)

    foreign = f"{prefix}{T0 + 15:.3f}.enc"  # another user's object copied into the prefix
    other = legacy_bytes(".enc", chunks[3:], secret=SECRET, uid="someone-else")
    ctx.bucket.create_only(foreign, other, content_type="x", metadata={})
    with pytest.raises(DecryptionError, match=rf"{foreign}: sealed record 0"):
        storage.download_merged_audio(uid, cid, context=sctx)
