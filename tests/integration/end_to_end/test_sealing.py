"""Envelope v1 end to end: a real pusher seals, the real flush stores into the GCS
emulator, the reader opens; then the bucket is tampered with as an attacker or a bug
would (records dropped, copied, spliced), and key rotation is done as an operator would.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import cast

import pytest

from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import DecryptionError, SplicedRecordError
from backend_hooks.contract.settings import Settings
from backend_hooks.read.merge import MissingChunks
from tests.integration.flushing import FakeClock, flush, keys
from tests.integration.sealed_sessions import (
    NEW,
    OLD,
    RATE,
    T0,
    only_object,
    record_sealed,
    rewrite_object,
    sealing_settings,
)
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def test_a_dropped_record_is_reported_and_logged(
    ctx: WorkerContext, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sealing_settings(ctx, NEW)
    session_id = record_sealed(ctx, clock, settings, "seal-user", "seal-conv", 6, T0)
    sctx = storage.StorageContext.from_settings(settings)
    name = only_object(sctx, "seal-user", "seal-conv")
    data = ctx.bucket.download(name.path)
    records = envelope.split_records(data)
    assert [r.version for r in records] == [1] * 6  # the pusher writes v1
    assert [r.info.seq for r in records if r.info] == list(range(6))
    whole = storage.download_merged_audio("seal-user", "seal-conv", context=sctx)
    assert whole.missing == () and whole.sample_count == 6 * RATE

    third = records[2]
    rewrite_object(ctx, name.path, data[: third.offset] + data[third.end :])
    with caplog.at_level(logging.WARNING, logger="backend_hooks.storage"):
        merged = storage.download_merged_audio("seal-user", "seal-conv", context=sctx)
    before, after = records[1].info, records[3].info
    assert before is not None and after is not None
    assert merged.missing == (
        MissingChunks(session_id, 2, 2, before.end_us, after.start_us, "sequence"),
    )
    assert merged.sample_count == 6 * RATE  # filled with zeros, and reported
    assert f"session {session_id} chunks 2..2" in caplog.text

    rewrite_object(ctx, name.path, data[: records[5].offset])  # the last record dropped
    merged = storage.download_merged_audio("seal-user", "seal-conv", context=sctx)
    assert [(m.first_seq, m.last_seq, m.found_by) for m in merged.missing] == [(5, None, name.path)]


def test_an_object_copied_under_another_user_does_not_open(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    settings = sealing_settings(ctx, NEW)
    record_sealed(ctx, clock, settings, "victim", "conv", 2, T0)
    sctx = storage.StorageContext.from_settings(settings)
    name = only_object(sctx, "victim", "conv")
    copied = naming.conversation_prefix("thief", "conv") + name.filename
    ctx.bucket.create_only(copied, ctx.bucket.download(name.path), content_type="x", metadata={})
    with pytest.raises(DecryptionError, match=rf"{copied}: sealed record 0 .*'thief'"):
        storage.download_merged_audio("thief", "conv", context=sctx)


def test_a_v0_record_spliced_into_a_new_object_is_refused_or_skipped(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """A legacy v0 record of the same user put in front of a fleet object's records opens
    with the user's key, but v0 authenticates neither its place nor its session, and the
    pusher never writes one into a new object: the strict read refuses the object naming
    the record; skip_broken leaves the record out, reports it, and reads the rest as
    stored."""
    settings = sealing_settings(ctx, NEW)
    uid, cid = f"splice-{uuid.uuid4().hex[:8]}", "conv"
    record_sealed(ctx, clock, settings, uid, cid, 6, T0)
    sctx = storage.StorageContext.from_settings(settings)
    name = only_object(sctx, uid, cid)
    stored = storage.download_merged_audio(uid, cid, context=sctx)
    data = ctx.bucket.download(name.path)
    chunk = envelope.split_records(data)[2].info  # the forgery claims chunk 2's place
    assert chunk is not None
    encoder = ChunkEncoder(RATE)
    other = container.build_chunk(
        chunk, encoder.encode(speech_like(1, RATE, seed=999)), encoder.pre_skip
    )
    assert envelope.UserKeys(NEW).key_id in data  # the same secret, the same user's key
    rewrite_object(
        ctx, name.path, envelope.seal_v0(envelope.UserKeys(NEW).cipher(uid), other) + data
    )

    with pytest.raises(SplicedRecordError, match=rf"{name.path}: sealed record 0 is envelope v0"):
        storage.download_merged_audio(uid, cid, context=sctx)
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sctx)
    assert merged.pcm == stored.pcm and merged.missing == ()
    [skipped] = merged.skipped
    assert skipped.path == name.path and "sealed record 0 is envelope v0" in skipped.reason


def test_rotation_old_objects_open_new_ones_are_sealed_with_the_new_secret(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    record_sealed(ctx, clock, sealing_settings(ctx, OLD), "rot-user", "rot-conv", 2, T0)
    rotated = sealing_settings(ctx, NEW, (OLD,))
    record_sealed(ctx, clock, rotated, "rot-user", "rot-conv", 2, T0 + 10)

    sctx = storage.StorageContext.from_settings(rotated)
    ids: list[bytes | None] = []
    for item in storage.list_audio_chunks("rot-user", "rot-conv", context=sctx):
        ids += {r.key_id for r in envelope.split_records(ctx.bucket.download(item["path"]))}
    assert ids == [envelope.key_id(OLD), envelope.key_id(NEW)]
    merged = storage.download_merged_audio("rot-user", "rot-conv", context=sctx, fill_gaps=False)
    assert merged.sample_count == 4 * RATE and merged.missing == ()

    without_previous = storage.StorageContext.from_settings(sealing_settings(ctx, NEW))
    with pytest.raises(DecryptionError, match="ENCRYPTION_SECRET_PREVIOUS"):
        storage.download_merged_audio("rot-user", "rot-conv", context=without_previous)


def test_the_documented_rotation_through_the_environment_with_a_secret_read_from_a_file(
    stack: StackInfo, ctx: WorkerContext, clock: FakeClock
) -> None:
    """docs/FORMATS.md §3.2's steps as an operator runs them, with secrets as a file
    gives them (a comma, the file's trailing newline), which ENCRYPTION_SECRET accepts:
    seal with A; rotate to ENCRYPTION_SECRET=B, ENCRYPTION_SECRET_PREVIOUS_JSON=[A]
    (pusher and reader): the objects of both read; drop A: B's still read, A's name the
    key id they need."""
    a = "first secret, as a file holds it 0123456789\n"
    b = "second secret, as a file holds it 9876543210\n"
    uid = f"rot-env-{uuid.uuid4().hex[:8]}"

    def from_env(role: str, **env: str) -> Settings:
        return Settings.from_env({**stack.env(), **env}, role=role)

    record_sealed(ctx, clock, from_env("pusher", ENCRYPTION_SECRET=a), uid, "before", 2, T0)
    rotated = {"ENCRYPTION_SECRET": b, "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([a])}
    record_sealed(ctx, clock, from_env("pusher", **rotated), uid, "after", 2, T0 + 10)

    reader = storage.StorageContext.from_settings(from_env("reader", **rotated))
    for cid, secret in (("before", a), ("after", b)):
        data = ctx.bucket.download(only_object(reader, uid, cid).path)
        assert {r.key_id for r in envelope.split_records(data)} == {
            envelope.key_id(secret.encode())
        }
        assert storage.download_merged_audio(uid, cid, context=reader).sample_count == 2 * RATE

    dropped = storage.StorageContext.from_settings(from_env("reader", ENCRYPTION_SECRET=b))
    assert storage.download_merged_audio(uid, "after", context=dropped).sample_count == 2 * RATE
    with pytest.raises(DecryptionError, match=envelope.key_id(a.encode()).hex()):
        storage.download_merged_audio(uid, "before", context=dropped)


def test_the_worker_quarantines_a_sealed_entry_whose_header_disagrees(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(sealing_settings(ctx, NEW), clock=clock)
    session = client.open_session("q-user", "q-conv", RATE, "enhanced")
    session.push(speech_like(3, RATE, seed=3), T0)
    session.close()
    stream = keys(session.session_id)
    r = ctx.store.client
    [(_, real)] = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(stream.chunks, count=1))
    forged = {**real, b"seq": b"40"}  # the entry says seq 40, its sealed header says 0
    r.xadd(stream.chunks, forged)  # type: ignore[arg-type]
    result = flush(ctx, session.session_id)
    assert result.failed is None and result.objects_created == 1, result
    [(_, moved)] = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(stream.quarantine))
    assert moved[b"f:seq"] == b"40"
    assert b"the sealed record's header (session, seq, start_us, samples, rate)" in moved[b"reason"]
    client.close()
