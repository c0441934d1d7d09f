"""The fleet's deletion work (workers/deletions.py) on the real valkey and GCS emulator:
re-checks of deleted conversations and blind-upload notes are carried out, never dropped
unresolved, and never lose a re-check queued while one runs."""

from __future__ import annotations

import dataclasses
import time
from typing import cast

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.adapters.redis_store import (
    RedisClient,
    connect_one_attempt,
    mark_conversation_deleted,
    schedule_deletion_recheck,
)
from backend_hooks.contract import naming
from backend_hooks.contract.redis_keys import (
    blind_uploads_key,
    deletion_failures_key,
    deletion_item,
    deletion_recheck_key,
)
from tests.integration.flushing import FakeClock, flush, keys
from workers import deletions, operations
from workers.context import WorkerContext
from workers.store import LeaseLostError, WorkerStore

pytestmark = pytest.mark.integration
SHARD = 3


def objects(bucket: GcsBucket, uid: str, cid: str) -> list[str]:
    return [o.name for o in bucket.list(naming.conversation_prefix(uid, cid))]


def landed(bucket: GcsBucket, uid: str, cid: str, start: int = 1_700_000_000) -> str:
    """An object in the conversation, as a late upload leaves it."""
    name = f"{naming.conversation_prefix(uid, cid)}{start}.000.bin"
    bucket.create_only(name, b"\0\0", content_type="application/octet-stream", metadata={})
    return name


def run(ctx: WorkerContext, bucket: GcsBucket | None = None) -> deletions.DeletionRun:
    return deletions.run(
        ctx.store, bucket or ctx.bucket, recheck_seconds=600, backoff_cap_seconds=60
    )


def until(ctx: WorkerContext, done: str, bucket: GcsBucket | None = None) -> deletions.DeletionRun:
    """Runs until one counted ``done`` (an item queued 1 ms ahead, or backing off, is not
    due at once)."""
    deadline = time.monotonic() + 90
    while not getattr(result := run(ctx, bucket), done):
        assert time.monotonic() < deadline, f"never {done}: {result}"
        time.sleep(0.05)
    return result


def test_a_failing_recheck_stays_with_its_error_and_is_done_once_gcs_answers(
    ctx: WorkerContext,
) -> None:
    client = ctx.store.client
    schedule_deletion_recheck(client, SHARD, "fail-user", "fail-conv", after_seconds=0.001)
    name = landed(ctx.bucket, "fail-user", "fail-conv")
    missing = GcsBucket(ctx.bucket.client, "no-such-bucket")  # every request: 404

    assert until(ctx, "failed", missing).rechecks == 0
    member = deletion_item("fail-user", "fail-conv").encode()
    assert client.zscore(deletion_recheck_key(SHARD), member) is not None  # it stays
    failure = cast(bytes | None, client.hget(deletion_failures_key(SHARD), b"recheck:" + member))
    assert failure is not None and failure.startswith(b"1|") and b"no-such-bucket" in failure
    backlog = operations.deletion_backlog(ctx.store, ctx.store.time())
    assert (backlog.rechecks, backlog.failing) == (1, 1)
    assert objects(ctx.bucket, "fail-user", "fail-conv") == [name]

    assert until(ctx, "rechecks").late_objects == 1  # due again after its backoff
    assert objects(ctx.bucket, "fail-user", "fail-conv") == []
    backlog = operations.deletion_backlog(ctx.store, ctx.store.time())
    assert (backlog.rechecks, backlog.failing) == (0, 0)


class QueuedAgainWhileListing(GcsBucket):
    """The real bucket; while the re-check lists, another writer queues a later one."""

    def __init__(self, inner: GcsBucket, redis: RedisClient, uid: str, cid: str) -> None:
        self.client, self.bucket = inner.client, inner.bucket
        self.redis, self.uid, self.cid, self.queued = redis, uid, cid, False

    def delete_prefix(self, prefix: str) -> int:
        if not self.queued:
            self.queued = True
            schedule_deletion_recheck(self.redis, SHARD, self.uid, self.cid, after_seconds=600)
        return super().delete_prefix(prefix)


def test_a_recheck_queued_again_while_one_runs_stays_for_its_later_time(
    ctx: WorkerContext,
) -> None:
    client = ctx.store.client
    schedule_deletion_recheck(client, SHARD, "again-user", "again-conv", after_seconds=0.001)
    landed(ctx.bucket, "again-user", "again-conv")
    bucket = QueuedAgainWhileListing(ctx.bucket, client, "again-user", "again-conv")

    assert until(ctx, "rechecks", bucket).late_objects == 1
    score = client.zscore(deletion_recheck_key(SHARD), deletion_item("again-user", "again-conv"))
    assert score is not None and score > (ctx.store.time() + 500) * 1000  # the later one


def test_blind_uploads_of_deleted_conversations_go_and_the_others_stay(
    ctx: WorkerContext,
) -> None:
    store, sid, token = ctx.store, "blind-session", "flush-token"
    shard = keys(sid).shard
    assert store.acquire_lease(sid, token, 30)
    gone = landed(ctx.bucket, "blind-user", "gone")
    kept = landed(ctx.bucket, "blind-user", "kept")
    mark_conversation_deleted(store.client, "blind-user", "gone", ttl_seconds=3600)
    store.note_blind_upload(sid, token, "blind-user", "gone", gone)
    store.note_blind_upload(sid, token, "blind-user", "kept", kept)
    with pytest.raises(LeaseLostError):  # fenced like every write of a flush
        store.note_blind_upload(sid, "a-zombie", "blind-user", "kept", kept)
    backlog = operations.deletion_backlog(store, store.time())
    assert backlog.blind_uploads == 2

    result = run(ctx)
    assert (result.blind_resolved, result.blind_deleted, result.blind_waiting) == (2, 1, 0)
    assert objects(ctx.bucket, "blind-user", "gone") == []
    assert objects(ctx.bucket, "blind-user", "kept") == [kept]
    assert store.client.zcard(blind_uploads_key(shard)) == 0
    # an attempt of the blind upload may land later: its conversation is listed again then
    member = deletion_item("blind-user", "gone")
    assert store.client.zscore(deletion_recheck_key(shard), member) is not None


def test_a_flush_that_cannot_read_the_mark_uploads_and_notes_it_once(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("unread-user", "unread-conv", 16000, "standard")
    session.push(speech_like(7, 16000, seed=8), clock())
    session.close()
    client.close()
    clock.sync(ctx.store.client)
    nowhere = WorkerStore(  # the marks' node does not answer: nothing listens there
        ctx.store.client,
        ctx.store.shards,
        mark_reader=lambda: connect_one_attempt("redis://127.0.0.1:1/0", cluster=False, seconds=1),
    )
    result = flush(dataclasses.replace(ctx, store=nowhere), session.session_id)

    assert result.failed is None and result.objects_created == 1 and result.blind_uploads == 1
    [name] = objects(ctx.bucket, "unread-user", "unread-conv")
    notes = ctx.store.blind_uploads(keys(session.session_id).shard, 10)
    assert [m for m, _ in notes] == [deletion_item("unread-user", "unread-conv", name).encode()]


class QueuedSoonerWhileListing(QueuedAgainWhileListing):
    """While the re-check lists, a delete with a shorter AUDIOSYNC_DELETE_RECHECK_SECONDS
    than the fleet's (a reader configured apart) queues one due before the claim ends."""

    def delete_prefix(self, prefix: str) -> int:
        if not self.queued:
            self.queued = True
            schedule_deletion_recheck(self.redis, SHARD, self.uid, self.cid, after_seconds=1)
        return super().delete_prefix(prefix)


def test_a_recheck_queued_while_one_runs_is_kept_even_when_due_before_the_claim_ends(
    ctx: WorkerContext,
) -> None:
    client = ctx.store.client
    schedule_deletion_recheck(client, SHARD, "soon-user", "soon-conv", after_seconds=0.001)
    bucket = QueuedSoonerWhileListing(ctx.bucket, client, "soon-user", "soon-conv")

    until(ctx, "rechecks", bucket)  # claimed for 300 s (half the fleet's 600, at most 300)
    assert bucket.queued
    # the request queued during the listing stands for attempts still in flight then: it
    # must outlive the run that was listing, not be removed with its claim
    member = deletion_item("soon-user", "soon-conv")
    assert client.zscore(deletion_recheck_key(SHARD), member) is not None
