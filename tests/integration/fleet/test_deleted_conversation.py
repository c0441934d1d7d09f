"""A deleted conversation gets no more audio (LEGACY_FORMATS.md pitfall: the old uploader
kept uploading to conversations that had been deleted).

The delete marks the conversation in Redis before it deletes its objects; the flush looks
before and after each upload. Each test stops the flush at one of the dangerous points:
audio still in the stream after the delete, a delete landing while an upload is in
flight, a flush that died after its upload and before the delete's mark.
"""

from __future__ import annotations

import time

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.redis_store import conversation_deleted, mark_conversation_deleted
from backend_hooks.contract import naming
from backend_hooks.contract.errors import StorageError
from backend_hooks.contract.redis_keys import deleted_conversation_key
from tests.integration.flushing import CueBucket, FakeClock, flush, read_entries
from workers.context import WorkerContext
from workers.flush import content_type
from workers.planner import plan_flush

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))
TTL = 3600


def objects(ctx: WorkerContext, uid: str, cid: str) -> list[str]:
    return [o.name for o in ctx.bucket.list(naming.conversation_prefix(uid, cid))]


def delete_now(ctx: WorkerContext, uid: str, cid: str) -> None:
    """What ``delete_conversation_audio`` does: mark first, then delete what is listed."""
    mark_conversation_deleted(ctx.store.client, uid, cid, ttl_seconds=TTL)
    for name in objects(ctx, uid, cid):
        ctx.bucket.delete(name)


def test_the_mark_is_per_conversation_and_unambiguous(ctx: WorkerContext) -> None:
    client = ctx.store.client
    mark_conversation_deleted(client, "a:b", "c", ttl_seconds=TTL)
    assert conversation_deleted(client, "a:b", "c")
    assert not conversation_deleted(client, "a", "b:c")  # ids may hold ':'
    assert not conversation_deleted(client, "a:b", "d")
    ttl = client.ttl(deleted_conversation_key("a:b", "c"))
    assert 0 < ttl <= TTL


def test_audio_still_in_the_stream_is_dropped_not_uploaded(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    doomed = client.open_session("del-user", "del-conv", 16000, "standard")
    kept = client.open_session("del-user", "kept-conv", 16000, "standard")
    audio = speech_like(12, 16000, seed=3)
    for session in (doomed, kept):
        session.push(audio, T0)
        session.close()
    clock.sync(ctx.store.client)

    delete_now(ctx, "del-user", "del-conv")
    dropped = flush(ctx, doomed.session_id)
    stored = flush(ctx, kept.session_id)

    assert dropped.failed is None and dropped.objects_created == 0
    assert dropped.chunks_dropped_deleted == 3  # 12 s: chunks of 5, 5 and 2 s
    assert read_entries(ctx, doomed.session_id) == []  # gone, not left to retry forever
    assert objects(ctx, "del-user", "del-conv") == []
    assert stored.objects_created == 1 and stored.chunks_dropped_deleted == 0
    assert len(objects(ctx, "del-user", "kept-conv")) == 1
    client.close()


def test_a_delete_landing_during_the_upload_deletes_the_object(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("race-user", "race-conv", 16000, "standard")
    session.push(speech_like(7, 16000, seed=4), T0)
    session.close()
    clock.sync(ctx.store.client)
    # The delete marks and lists after the flush looked and before its upload is done:
    # its listing finds nothing, so only the flush can remove what it stores.
    bucket = CueBucket(
        ctx.bucket,
        before={0: lambda: delete_now(ctx, "race-user", "race-conv")},
    )
    result = flush(ctx, session.session_id, bucket)
    assert bucket.uploads, "the flush never reached its upload"
    assert result.failed is None and result.chunks_dropped_deleted == 2
    assert objects(ctx, "race-user", "race-conv") == []
    assert read_entries(ctx, session.session_id) == []
    client.close()


def test_an_upload_of_a_flush_that_died_before_the_mark_is_removed(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("dead-user", "dead-conv", 16000, "standard")
    session.push(speech_like(7, 16000, seed=5), T0)
    session.close()
    clock.sync(ctx.store.client)
    # A flush records its plan; the delete marks and lists (nothing yet); the flush's
    # upload lands; the flush dies before it looks again.
    plan = plan_flush(read_entries(ctx, session.session_id), clock(), ctx.policy)
    first = plan.objects[0]
    data = first.data()
    assert ctx.store.acquire_lease(session.session_id, "dying-flush", 30)
    ctx.store.record_plan(
        session.session_id, "dying-flush", [first.record(first.name(data)).dumps()]
    )
    delete_now(ctx, "dead-user", "dead-conv")
    ctx.bucket.create_only(
        first.name(data),
        data,
        content_type=content_type(False),
        metadata=first.metadata(session.session_id),
    )
    assert objects(ctx, "dead-user", "dead-conv") == [first.name(data)]
    ctx.store.release_lease(session.session_id, "dying-flush")

    result = flush(ctx, session.session_id)  # the successor carries out the plan
    assert result.resumed_plan and result.chunks_dropped_deleted == 2
    assert objects(ctx, "dead-user", "dead-conv") == []
    assert read_entries(ctx, session.session_id) == []
    client.close()


def test_delete_conversation_audio_stops_a_live_session_uploading(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """Through the reader's API: objects stored before the delete go, audio pushed after
    it (the session is still live) is never uploaded; another conversation goes on."""
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("live-user", "live-conv", 16000, "standard")
    audio = speech_like(14, 16000, seed=6)
    session.push(audio[: 2 * 16000 * 7], T0)
    session.switch_conversation("next-conv")  # the first conversation's tail is flushed
    clock.sync(ctx.store.client)
    assert flush(ctx, session.session_id).objects_created == 1
    assert len(objects(ctx, "live-user", "live-conv")) == 1

    assert storage.delete_conversation_audio("live-user", "live-conv", context=sctx)["chunks"] == 1
    assert objects(ctx, "live-user", "live-conv") == []
    # A replayed or late chunk of the deleted conversation, and the session's next one.
    late = client.open_session("live-user", "live-conv", 16000, "standard")
    late.push(audio[: 2 * 16000 * 3], T0 + 20)
    late.close()
    session.push(audio[2 * 16000 * 7 :], T0 + 7)
    session.close()
    clock.sync(ctx.store.client)
    dropped = flush(ctx, late.session_id)
    assert dropped.chunks_dropped_deleted == 1 and dropped.objects_created == 0
    assert flush(ctx, session.session_id).objects_created == 1
    assert objects(ctx, "live-user", "live-conv") == []
    assert len(objects(ctx, "live-user", "next-conv")) == 1
    client.close()


def test_a_delete_without_redis_deletes_nothing_and_says_so(ctx: WorkerContext) -> None:
    from dataclasses import replace

    name = f"{naming.conversation_prefix('off-user', 'off-conv')}1700000000.000.bin"
    ctx.bucket.create_only(name, b"\0\0", content_type="application/octet-stream", metadata={})
    away = replace(ctx.settings, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    sctx = storage.StorageContext(away, ctx.bucket, None)
    with pytest.raises(StorageError, match="could not mark it deleted"):
        storage.delete_conversation_audio("off-user", "off-conv", context=sctx)
    assert objects(ctx, "off-user", "off-conv") == [name]
