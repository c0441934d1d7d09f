"""Entries that pass validate_entry's format checks but would make the whole conversation
unreadable. The worker counts the samples a standard chunk's Opus packets
hold (from their TOC bytes) and quarantines a chunk that holds fewer than its tags say.
A sealed record that no key opens stays the reader's to handle: a strict read names it,
``skip_broken`` leaves out that record alone.

workers/validate.py: a chunk is "checked fully before concatenation ... never into an
object, where one bad chunk would make the whole conversation unreadable". The standard
check parses the Ogg pages and compares the tags, but never decodes the audio packets
nor compares the samples the packets hold with ``AUDIOSYNC_SAMPLES``; the enhanced check
is framing only. One such entry is stored with its neighbours, and every later
``download_merged_audio`` of the conversation raises: the good chunks are unreadable too.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace

import pytest

from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import container, envelope
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import DecryptionError
from tests.integration.flushing import CHUNK, RATE, FakeClock, flush, push_chunks, raw_xadd
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _short_chunk(session_id: str, fields: dict[bytes, bytes], seq: int) -> dict[bytes, bytes]:
    """Tags and granule say 5 s; the pages hold 3 packets (60 ms). CRCs all valid."""
    samples = int(fields[b"samples"])
    start_us = int(fields[b"start_us"]) + 10_000_000
    info = container.ChunkInfo(session_id, seq, start_us, RATE, samples)
    encoder = ChunkEncoder(RATE)
    packets = encoder.encode(bytes(2 * 320))[:3]
    data = container.build_chunk(info, packets, encoder.pre_skip)
    return {
        **fields,
        b"seq": str(seq).encode(),
        b"start_us": str(start_us).encode(),
        b"data": data,
    }


def test_a_chunk_whose_packets_hold_too_few_samples_is_quarantined(
    ctx: WorkerContext,
) -> None:
    uid = f"short-{uuid.uuid4().hex[:8]}"
    session = push_chunks(ctx, FakeClock(time.time()), uid, 2, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, _short_chunk(sid, ctx.store.read_raw(sid, 10)[1][1], seq=2))
    session.close()  # the pusher's own tail: seq 2 is free (no audio left in its buffer)

    result = flush(ctx, sid)
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    readable: int | str
    try:
        audio = storage.download_merged_audio(uid, "conv", context=sctx)
        readable = audio.sample_count
    except Exception as exc:
        readable = f"{type(exc).__name__}: {exc}"
    # Either the bad chunk went to quarantine, or at least the good 10 s stay readable.
    assert result.quarantined == 1 or readable == 2 * 5 * RATE, (result, readable)


def test_a_sealed_record_that_does_not_open_is_named_or_skipped_alone(ctx: WorkerContext) -> None:
    """The worker holds no key, so it stores a record that no key opens with its
    neighbours: a strict read names it; ``skip_broken`` reads the other chunks of its
    object and reports the record."""
    secret = b"unopenable-record-secret-0123456789"
    settings = replace(ctx.settings, encryption_secret=secret)
    client = AudioSyncClient(settings)
    uid = f"sealed-{uuid.uuid4().hex[:8]}"
    session = client.open_session(uid, "conv", RATE, "enhanced")
    session.push(CHUNK * 2, time.time())
    sid = session.session_id
    _, fields = ctx.store.read_raw(sid, 10)[1]
    # One well-framed v1 record that no key opens: its header is the entry's, under the
    # user's key id, and its body is noise (a v0 one would be quarantined: v0 records do
    # not belong in a session that seals v1).
    start_us = int(fields[b"start_us"]) + 5_000_000
    info = container.ChunkInfo(sid, 2, start_us, RATE, int(fields[b"samples"]))
    body = os.urandom(12 + 100 + 16)
    header = envelope.v1_header(envelope.key_id(secret), info, len(body))
    bogus = {**fields, b"seq": b"2", b"start_us": str(start_us).encode(), b"data": header + body}
    raw_xadd(ctx, sid, bogus)
    session.close()

    result = flush(ctx, sid)
    assert result.objects_created == 1 and result.quarantined == 0  # the fleet cannot tell
    sctx = storage.StorageContext(settings, ctx.bucket, envelope.UserKeys(secret))
    with pytest.raises(DecryptionError, match=r"sealed record 2"):
        storage.download_merged_audio(uid, "conv", context=sctx)
    merged = storage.download_merged_audio(uid, "conv", skip_broken=True, context=sctx)
    assert merged.sample_count == 2 * 5 * RATE  # the two good chunks, in place
    [skipped] = merged.skipped
    assert "sealed record 2" in skipped.reason and skipped.used_instead == ()
