"""What happens to a session's lease and due time while a flush is in the middle of it.

- A pusher that appends while a flush runs (a close's end marker, say) makes the session
  due now: the flush's finish compares the stream's last entry with the last one it read
  and does not overwrite "due now" with the time it computed (workers/lua/finish.lua).
- A flush renews its lease before each upload, so another flush cannot take the session
  however long a plan of several objects takes, as long as each upload fits its share.
"""

from __future__ import annotations

import time

import pytest

from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract.entries import id_millis
from tests.integration.flushing import CueBucket, FakeClock, flush, keys, push_chunks
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
LEFT_MS = 5000  # what is left of the lease once the first object is uploaded


def test_a_close_during_a_flush_leaves_the_session_due_now(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    session = push_chunks(ctx, clock, "closing", 13, close=False)  # 60 s object + young 5 s
    sid = session.session_id
    clock.sync(ctx.store.client)
    closing = CueBucket(ctx.bucket, before={0: session.close})  # appended during the upload
    result = flush(ctx, sid, closing)
    assert result.objects_created == 1 and result.failed is None
    now = redis_time(ctx.store.client)
    assert result.next_due is not None and result.next_due > now  # the young chunk waits...
    due = ctx.store.client.zscore(keys(sid).due, sid)
    assert due is not None
    assert due <= now, (  # ...but its close makes it due now
        f"due in {due - now:.1f} s: the close's end marker waits for the young chunk's age"
    )


def test_a_flush_keeps_its_lease_across_uploads(ctx: WorkerContext, clock: FakeClock) -> None:
    sid = push_chunks(ctx, clock, "renewing", 24).session_id  # two 60 s objects
    clock.sync(ctx.store.client)
    lease = keys(sid).lease
    client = ctx.store.client
    taken: list[bool] = []

    def most_of_the_lease_is_spent() -> None:  # the first upload took all but LEFT_MS
        client.pexpire(lease, LEFT_MS)

    def another_flush_tries() -> None:  # the second upload outlasts what was left
        deadline = time.monotonic() + 60
        while client.exists(lease) and int(client.pttl(lease)) <= LEFT_MS:
            assert time.monotonic() < deadline, "the lease neither renewed nor ran out"
            time.sleep(0.05)
        begun = ctx.store.begin(sid, "another-flush", ctx.config.lease_seconds, 10)
        taken.append(begun is not None)

    uploads = CueBucket(
        ctx.bucket, after={0: most_of_the_lease_is_spent}, before={1: another_flush_tries}
    )
    result = flush(ctx, sid, uploads)
    assert taken == [False], "another flush took the session between two uploads"
    assert result.objects_created == 2 and result.skipped is None and result.failed is None


def test_an_append_after_a_flush_emptied_the_session_makes_it_due_again(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """The flush that stores a session's last entries deletes its stream and its due entry
    (workers/lua/finish.lua); the pusher's next append must put the session back in the
    due index: the append script's ZADD is never skipped."""
    session = push_chunks(ctx, clock, "emptied", 12, close=False)  # one 60 s object
    sid = session.session_id
    clock.sync(ctx.store.client)
    result = flush(ctx, sid)
    assert result.objects_created == 1 and result.failed is None
    client = ctx.store.client
    assert client.zscore(keys(sid).due, sid) is None and not client.exists(keys(sid).chunks)
    session.close()  # the end marker: due now, at its entry's Redis time
    [(end_id, _)] = ctx.store.read_raw(sid, 10)
    due = client.zscore(keys(sid).due, sid)
    assert due is not None and due <= redis_time(client)
    assert due == pytest.approx(id_millis(end_id) / 1000, abs=1e-3)
