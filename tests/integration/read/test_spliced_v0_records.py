"""An envelope v0 record of the same user among a new object's v1 records (it opens with
the user's key, but authenticates neither its place nor its session): what the listing,
the cached merged WAV and the flush fleet do with it, in the GCS emulator and Redis. The
strict and salvage reads themselves: tests/integration/end_to_end/test_sealing.py."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import cast

import pytest
from google.oauth2 import service_account

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import FormatError, SplicedRecordError
from backend_hooks.contract.redis_keys import SessionKeys
from backend_hooks.read import conversations, object_reader
from tests.integration.flushing import FakeClock, flush, keys
from tests.integration.sealed_sessions import (
    NEW,
    RATE,
    T0,
    only_object,
    record_sealed,
    rewrite_object,
    sealing_settings,
)
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
Stream = list[tuple[bytes, dict[bytes, bytes]]]


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
    ctx: WorkerContext, clock: FakeClock, tag: str, *, prepend: bool = False
) -> tuple[storage.StorageContext, str, str]:
    """A fleet object of 6 s with a v0 record claiming chunk 2 appended (or put in front),
    rewritten as a tool rewrites an object (without the flush's metadata)."""
    settings = sealing_settings(ctx, NEW)
    uid, cid = f"{tag}-{uuid.uuid4().hex[:8]}", "conv"
    record_sealed(ctx, clock, settings, uid, cid, 6, T0)
    sctx = storage.StorageContext.from_settings(settings)
    name = only_object(sctx, uid, cid)
    data = ctx.bucket.download(name.path)
    chunk = envelope.split_records(data)[2].info
    assert chunk is not None
    spliced = _v0_record(uid, chunk)
    rewrite_object(ctx, name.path, spliced + data if prepend else data + spliced)
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


def test_a_new_object_renamed_to_a_legacy_name_is_not_read_around_the_check(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """The check applies to new objects, named by their digest; a legacy ``.opus.enc``
    holds only v0 records. Renamed to a legacy name (``{start}.opus.enc``), the object
    with the v0 record in front read as if legacy, the v0 record's audio in place of
    chunk 2's (12,286 of 96,000 samples changed), nothing reported: a v1 record under a
    legacy name is refused, as the backfill and the raw legacy objects' reader do."""
    sctx, uid, cid = _spliced_conversation(ctx, clock, "splice-rename", prepend=True)
    name = only_object(sctx, uid, cid)
    legacy = f"{naming.conversation_prefix(uid, cid)}{naming.format_time(name.start_us)}.opus.enc"
    rewrite_object(ctx, legacy, ctx.bucket.download(name.path))
    ctx.bucket.delete(name.path)
    with pytest.raises(FormatError, match=rf"{legacy}: sealed record 1 is envelope v1"):
        storage.download_merged_audio(uid, cid, context=sctx)
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sctx)
    [skipped] = merged.skipped
    assert merged.sample_count == 0 and skipped.path == legacy
    assert "sealed record 1 is envelope v1" in skipped.reason


def _wait_for_entries(ctx: WorkerContext, stream: str, count: int) -> Stream:
    deadline = time.monotonic() + 60
    while ctx.store.client.xlen(stream) < count:
        assert time.monotonic() < deadline, f"fewer than {count} entries in {stream!r}"
        time.sleep(0.05)
    return cast(Stream, ctx.store.client.xrange(stream))


@pytest.mark.parametrize(
    "where", ["among-the-chunks", "after-the-end-marker", "after-the-session-was-flushed"]
)
def test_a_v0_entry_appended_to_a_session_of_v1_chunks_is_quarantined(
    ctx: WorkerContext, clock: FakeClock, where: str
) -> None:
    """Someone who can write to Redis (not GCS, not the key) appends a v0 record of the
    same user, copied from elsewhere, to a live session's stream: the pusher seals every
    chunk of its sessions as v1, so such an entry cannot be the session's. The fleet
    knows by the v1 records in the same read, or, once they are stored, by the session's
    ``:appended`` mark (the first release, the only pusher that sealed v0, wrote none)."""
    settings = sealing_settings(ctx, NEW)
    uid, cid = f"inject-{uuid.uuid4().hex[:8]}", "conv"
    client = AudioSyncClient(settings, clock=clock)
    session = client.open_session(uid, cid, RATE, "enhanced")
    session.push(speech_like(3, RATE, seed=3), T0)
    stream = keys(session.session_id)
    if where != "among-the-chunks":
        session.close()
    genuine = _wait_for_entries(ctx, stream.chunks, 3)
    if where == "after-the-session-was-flushed":
        assert flush(ctx, session.session_id).objects_created == 1
        assert ctx.store.client.xlen(stream.chunks) == 0 and ctx.store.client.exists(
            stream.appended
        )
    fields = genuine[2][1]
    record = envelope.split_records(fields[b"data"])[0].info
    assert record is not None
    claimed = replace(record, seq=3, start_us=record.start_us + 1_000_000)
    forged = {
        **fields,
        b"seq": str(claimed.seq).encode(),
        b"start_us": str(claimed.start_us).encode(),
        b"data": _v0_record(uid, claimed),
    }
    ctx.store.client.xadd(stream.chunks, forged)  # type: ignore[arg-type]
    if where == "among-the-chunks":
        session.push(speech_like(2, RATE, seed=4), T0 + 3)  # seq 3 and 4, the genuine ones
        session.close()
    client.close()
    assert flush(ctx, session.session_id).failed is None
    clock.now += 2 * settings.batch_max_age_seconds  # anything left is due
    assert flush(ctx, session.session_id).failed is None

    quarantined = cast(Stream, ctx.store.client.xrange(stream.quarantine))
    assert [q[b"f:data"] for _, q in quarantined] == [forged[b"data"]]
    assert (
        b"an envelope v0 record in a session whose pusher seals v1" in quarantined[0][1][b"reason"]
    )
    sctx = storage.StorageContext.from_settings(settings)
    merged = storage.download_merged_audio(uid, cid, context=sctx)
    seconds = 5 if where == "among-the-chunks" else 3
    assert merged.sample_count == seconds * RATE and merged.missing == ()


def _as_first_release(ctx: WorkerContext, stream: SessionKeys, uid: str) -> None:
    """The session's stream as the first release's pusher wrote it: every chunk sealed
    as envelope v0, appended by a bare XADD (no ``:appended`` mark)."""
    user_keys = envelope.UserKeys(NEW)
    entries = cast(Stream, ctx.store.client.xrange(stream.chunks))
    ctx.store.client.delete(stream.chunks, stream.appended)
    for _, fields in entries:
        if fields[b"kind"] == b"chunk":
            [record] = envelope.split_records(fields[b"data"])
            plain = envelope.open_record(user_keys, uid, record)
            fields = {**fields, b"data": envelope.seal_v0(user_keys.cipher(uid), plain)}
        ctx.store.client.xadd(stream.chunks, fields)  # type: ignore[arg-type]


def test_a_first_release_stream_of_v0_entries_is_stored(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """An older pusher's session (a rolling upgrade): v0 chunks only and no ``:appended``
    mark. Nothing says its pusher seals v1, so its chunks are stored as they always were,
    in an object of v0 records only, which reads back whole."""
    settings = sealing_settings(ctx, NEW)
    uid, cid = f"first-release-{uuid.uuid4().hex[:8]}", "conv"
    client = AudioSyncClient(settings, clock=clock)
    session = client.open_session(uid, cid, RATE, "enhanced")
    pcm = speech_like(3, RATE, seed=5)
    session.push(pcm, T0)
    session.close()
    client.close()
    stream = keys(session.session_id)
    _wait_for_entries(ctx, stream.chunks, 4)
    _as_first_release(ctx, stream, uid)

    result = flush(ctx, session.session_id)
    assert (result.failed, result.quarantined, result.objects_created) == (None, 0, 1)
    sctx = storage.StorageContext.from_settings(settings)
    data = ctx.bucket.download(only_object(sctx, uid, cid).path)
    assert {r.info for r in envelope.split_records(data)} == {None}  # v0 records only
    merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.sample_count == 3 * RATE and merged.missing == ()
