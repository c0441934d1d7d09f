"""An envelope v0 record of the same user among a new object's v1 records (it opens with
the user's key, but authenticates neither its place nor its session): what the listing,
the cached merged WAV and the flush fleet do with it, in the GCS emulator and Redis. The
strict and salvage reads themselves: tests/integration/test_sealing.py."""

from __future__ import annotations

import uuid

import pytest
from google.oauth2 import service_account

from audiosync_dev.speech import speech_like
from backend_hooks import (
    container,
    conversations,
    envelope,
    object_reader,
    storage,
)
from backend_hooks.codec import ChunkEncoder
from backend_hooks.errors import SplicedRecordError
from tests.integration.flushing import FakeClock
from tests.integration.test_sealing import NEW, RATE, T0, _only_object, _record, _rewrite, _settings
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _v0_record(uid: str, chunk: container.ChunkInfo) -> bytes:
    """A v0 record of ``uid`` (it opens with the user's key) holding other audio that
    claims ``chunk``'s place."""
    encoder = ChunkEncoder(RATE)
    pcm = speech_like(chunk.sample_count / RATE, RATE, seed=999)
    return envelope.seal_v0(
        envelope.UserKeys(NEW).cipher(uid),
        container.build_chunk(chunk, encoder.encode(pcm), encoder.pre_skip),
    )


def _spliced_conversation(
    ctx: WorkerContext, clock: FakeClock, tag: str
) -> tuple[storage.StorageContext, str, str]:
    """A fleet object of 6 s with a v0 record claiming chunk 2 appended, rewritten as a
    tool rewrites an object (without the flush's metadata)."""
    settings = _settings(ctx, NEW)
    uid, cid = f"{tag}-{uuid.uuid4().hex[:8]}", "conv"
    _record(ctx, clock, settings, uid, cid, 6, T0)
    sctx = storage.StorageContext.from_settings(settings)
    name = _only_object(sctx, uid, cid)
    data = ctx.bucket.download(name.path)
    chunk = envelope.split_records(data)[2].info
    assert chunk is not None
    _rewrite(ctx, name.path, data + _v0_record(uid, chunk))
    return sctx, uid, cid


def test_the_listing_leaves_a_spliced_v0_record_out_of_the_duration(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """Without the flush's metadata the listing measures the records: it counted the v0
    record the read refuses (7.0 s listed for an object whose read gives 6.0 s)."""
    sctx, uid, cid = _spliced_conversation(ctx, clock, "splice-list")
    [item] = storage.list_audio_chunks(uid, cid, context=sctx)
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sctx)
    assert (item["duration"], merged.duration) == (6.0, 6.0)


def test_a_merged_wav_cached_before_spliced_records_were_refused_is_made_again(
    ctx: WorkerContext,
    clock: FakeClock,
    signer: service_account.Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A WAV the previous release cached from an object with a spliced v0 record holds
    the record's audio, and its sources (names, sizes, generations) have not changed
    since: served as fresh, it kept serving the spliced audio after the upgrade."""
    sctx, uid, cid = _spliced_conversation(ctx, clock, "splice-wav")
    # The previous release: its fingerprint version, and no check of v0 records.
    monkeypatch.setattr(conversations, "FINGERPRINT_VERSION", "audiosync merged wav 1")
    monkeypatch.setattr(object_reader, "spliced_v0_records", lambda records: [])
    made = storage.get_or_create_merged_audio(
        uid, cid, "file-1", [T0], signing_credentials=signer, context=sctx
    )
    assert made.created
    monkeypatch.undo()
    with pytest.raises(SplicedRecordError, match="sealed record 6 is envelope v0"):
        storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0], signing_credentials=signer, context=sctx
        )
