"""Sessions sealed by a real pusher and flushed into the GCS emulator, shared by the
sealing tests (tests/integration/end_to_end/test_sealing.py) and the reads of spliced
records (tests/integration/read/test_spliced_v0_records.py)."""

from __future__ import annotations

import time
from dataclasses import replace

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import naming
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import FakeClock, flush
from workers.context import WorkerContext

T0 = float(int(time.time()))
RATE = 8000
OLD = b"the-secret-before-the-rotation-0123456789"
NEW = b"the-secret-after-the-rotation-9876543210"


def sealing_settings(
    ctx: WorkerContext, secret: bytes, previous: tuple[bytes, ...] = ()
) -> Settings:
    """The context's settings sealing with ``secret`` (opening ``previous`` too), 1 s chunks."""
    return replace(
        ctx.settings,
        encryption_secret=secret,
        encryption_secret_previous=previous,
        chunk_seconds=1.0,
    )


def record_sealed(
    ctx: WorkerContext,
    clock: FakeClock,
    settings: Settings,
    uid: str,
    cid: str,
    seconds: float,
    start: float,
) -> str:
    """Push ``seconds`` of enhanced audio, close, flush; the session id."""
    client = AudioSyncClient(settings, clock=clock)
    session = client.open_session(uid, cid, RATE, "enhanced")
    session.push(speech_like(seconds, RATE, seed=int(start) % 1000), start)
    session.close()
    result = flush(ctx, session.session_id)
    assert result.failed is None and result.objects_created == 1, result
    client.close()
    return session.session_id


def only_object(sctx: storage.StorageContext, uid: str, cid: str) -> naming.ObjectName:
    [item] = storage.list_audio_chunks(uid, cid, context=sctx)
    return naming.parse_object_name(item["path"])


def rewrite_object(ctx: WorkerContext, path: str, data: bytes) -> None:
    ctx.bucket.delete(path)
    ctx.bucket.create_only(path, data, content_type="application/octet-stream", metadata={})
