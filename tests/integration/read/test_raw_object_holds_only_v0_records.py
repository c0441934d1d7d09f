"""A legacy raw-PCM sealed object (``.enc``) holds v0 records only. A v1 record (an Opus
chunk of the pusher, sealed for the same user with the same secret) spliced into one
opens with the user's key, and its bytes would be read as PCM: noise in the middle of
the conversation. The strict read refuses the object, naming it and the record; the
salvaging read (``skip_broken``) makes that record silence of its length and says so.
Objects in the real GCS emulator, records sealed by the legacy format's own code."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import replace

import pytest

from backend_hooks import storage
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.errors import FormatError
from tests.legacy_objects import v0_record
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
SECRET = b"raw-object-v0-only-secret-0123456789abcdef"
RATE = 8000
T0 = float(int(time.time()))


def test_a_v1_record_in_a_raw_object_is_refused_or_read_as_silence(ctx: WorkerContext) -> None:
    uid, cid = f"rawv1-{uuid.uuid4().hex[:8]}", "conv"
    before = random.Random(1).randbytes(2 * RATE)  # 1 s of PCM each side
    after = random.Random(2).randbytes(2 * RATE)
    info = container.ChunkInfo(
        session_id="s" + uuid.uuid4().hex,
        seq=0,
        start_us=round(T0 * 1_000_000),
        sample_rate=RATE,
        sample_count=RATE,
    )
    opus_chunk = random.Random(3).randbytes(900)  # what a chunk's container would hold
    spliced = envelope.seal(envelope.UserKeys(SECRET), uid, info, opus_chunk)
    path = f"{naming.conversation_prefix(uid, cid)}{T0:.3f}.enc"
    data = v0_record(SECRET, uid, before) + spliced + v0_record(SECRET, uid, after)
    ctx.bucket.create_only(path, data, content_type="application/octet-stream", metadata={})
    sctx = storage.StorageContext.from_settings(replace(ctx.settings, encryption_secret=SECRET))

    with pytest.raises(FormatError, match=rf"{path}: sealed record 1 is envelope v1"):
        storage.download_merged_audio(uid, cid, sample_rate=RATE, context=sctx)

    salvaged = storage.download_merged_audio(
        uid, cid, sample_rate=RATE, skip_broken=True, context=sctx
    )
    assert salvaged.pcm.startswith(before) and salvaged.pcm.endswith(after)
    middle = salvaged.pcm[len(before) : len(salvaged.pcm) - len(after)]
    assert middle and middle == bytes(len(middle))  # silence, not the chunk's bytes
    assert [(s.path, "envelope v1" in s.reason) for s in salvaged.skipped] == [(path, True)]
