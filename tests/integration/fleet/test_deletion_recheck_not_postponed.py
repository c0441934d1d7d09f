"""A deleted conversation's re-check is not pushed back by flushes that upload nothing.

The re-check queue keeps one item per conversation and shard, at the latest time asked
(``ZADD GT``). A flush that finds the conversation deleted *before* its upload stored
nothing and started no attempt that could land late, so it must not move that time: a
device still streaming into the deleted conversation would otherwise push the listing an
hour further with every flush, and an abandoned upload that landed after the delete's
listing would stay as long as the device streams. Real valkey and GCS emulator.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract import naming
from backend_hooks.contract.redis_keys import deletion_item, deletion_recheck_key, recheck_shard
from backend_hooks.pusher.session import Session
from tests.integration.flushing import FakeClock, flush, keys
from workers import deletions
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))
DELETE_RECHECK = 2.0  # the delete's AUDIOSYNC_DELETE_RECHECK_SECONDS (the fleet's: 3600)


def objects(bucket: GcsBucket, uid: str, cid: str) -> list[str]:
    return [o.name for o in bucket.list(naming.conversation_prefix(uid, cid))]


def session_in_the_recheck_shard(client: AudioSyncClient, uid: str, cid: str) -> Session:
    """A session of the conversation whose shard is the one its delete queues the re-check
    in (one session in AUDIOSYNC_DUE_SHARDS is)."""
    target = recheck_shard(uid, cid, client.settings.due_shards)
    for _ in range(2000):
        session = client.open_session(uid, cid, 16000, "standard")
        if keys(session.session_id).shard == target:
            return session
        session.close()
    raise AssertionError("no session id fell in the re-check's shard")


def test_a_flush_dropping_audio_it_never_uploaded_leaves_the_recheck_time_alone(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    uid, cid = "streaming-user", "streaming-conv"
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = session_in_the_recheck_shard(client, uid, cid)
    session.push(speech_like(12, 16000, seed=5), T0)  # the device still streams into it
    session.close()
    client.close()
    clock.sync(ctx.store.client)
    shard = keys(session.session_id).shard
    member = deletion_item(uid, cid)

    reader = storage.StorageContext(
        dataclasses.replace(ctx.settings, delete_recheck_seconds=DELETE_RECHECK), ctx.bucket, None
    )
    storage.delete_conversation_audio(uid, cid, context=reader)
    due = ctx.store.client.zscore(deletion_recheck_key(shard), member)
    assert due is not None
    # an attempt abandoned before the delete lands after its listing
    late = f"{naming.conversation_prefix(uid, cid)}1700000000.000.bin"
    ctx.bucket.create_only(late, b"\0", content_type="application/octet-stream", metadata={})

    result = flush(ctx, session.session_id)  # the mark is read before any upload
    assert result.failed is None and result.chunks_dropped_deleted == 3, result
    assert result.objects_created == 0
    assert ctx.store.client.zscore(deletion_recheck_key(shard), member) == due

    deadline = time.monotonic() + 60
    while objects(ctx.bucket, uid, cid):
        assert time.monotonic() < deadline, "the delete's re-check never ran"
        deletions.run(ctx.store, ctx.bucket, recheck_seconds=600, backoff_cap_seconds=60)
        time.sleep(0.2)
