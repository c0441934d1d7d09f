"""The upgrade path (FORMATS.md 5.5) reproduces a first-release cut: while ``:intent``
exists, the flush reads up to the pinned entry whatever its read limit and plans by the
first release's rules: every group written, no object cap, repeats kept. The fault this
guards against:

"A first-release flush that died after uploading left ``:intent``; the next flush cuts at
that entry again (the old rule), records that as its plan and deletes ``:intent``, so it
writes the same objects." The first release (git b05fc9c, workers/flush.py and
planner.py) read ``READ_LIMIT = 2000`` entries, wrote *every* closed group (no 8-object
cap) and did not drop repeats. This release reads 500, caps at 8 objects and drops
repeats, and the pin only closes the group that holds the pinned entry. So:

- with a backlog of more than 500 entries at the upgrade, the pinned entry is not in the
  new read; the read limit cuts a group that the first release stored whole, and
  ``:intent`` is deleted by that first record_plan, so no later flush pins either;
- a repeat (first-release pushers had no ``:appended`` mark: a lost reply meant a second
  XADD) inside an old object is dropped by the new planner: other bytes, other name.

Either way the chunks of the first release's objects are stored a second time. The old
objects are built here with the first release's formulas (its ``ObjectPlan.data`` and
``name`` are the same as today's: chunk bytes joined, ``naming.object_name``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from backend_hooks.contract.entries import ChunkEntry
from tests.integration.flushing import (
    CueBucket,
    FakeClock,
    assert_exactly_once,
    die,
    flush,
    keys,
    push_chunks,
    raw_xadd,
    read_entries,
    stored_seqs,
)
from workers.context import WorkerContext
from workers.flush import content_type
from workers.planner import ObjectPlan

pytestmark = pytest.mark.integration


def _first_release_flush_died(
    ctx: WorkerContext, sid: str, groups: list[list[ChunkEntry]], last_id: bytes
) -> None:
    """What a first-release flush leaves when it dies after its uploads: objects + intent."""
    for entries in groups:
        obj = ObjectPlan(entries=entries)
        data = obj.data()
        ctx.bucket.create_only(
            obj.name(data), data, content_type=content_type(False), metadata=obj.metadata(sid)
        )
    ctx.store.client.set(keys(sid).legacy_intent, last_id)


def _drain(ctx: WorkerContext, sid: str) -> None:
    for _ in range(10):
        if not ctx.store.read_raw(sid, 1):
            return
        assert flush(ctx, sid).failed is None
    raise AssertionError("the session never drained")


def test_a_first_release_cut_beyond_the_new_read_limit_is_kept(ctx: WorkerContext) -> None:
    """30 chunks + end; the old flush (read 4x the new limit) stored [0..11] [12..23] [24..29].

    read_limit=20 stands for 500 (the first release read 2000): the new flush reads seq
    0-19, does not see the pinned seq 29, and cuts [12..19] at its read limit.
    """
    ctx.config = replace(ctx.config, read_limit=20)
    uid = f"upgrade-limit-{uuid.uuid4().hex[:8]}"
    sid = push_chunks(ctx, FakeClock(time.time()), uid, 30).session_id
    chunks = [e for e in read_entries(ctx, sid) if isinstance(e, ChunkEntry)]
    _first_release_flush_died(
        ctx, sid, [chunks[0:12], chunks[12:24], chunks[24:30]], chunks[29].entry_id
    )
    _drain(ctx, sid)
    assert_exactly_once(ctx, uid, sid, 30)


def test_a_first_release_repeat_inside_the_pinned_object_keeps_its_name(
    ctx: WorkerContext,
) -> None:
    """Stream: seq 0, 1, 1 (a second XADD after a lost reply), end; old object [0, 1, 1].

    The new flush pins at the last seq 1 but drops it as a repeat: object [0, 1], other
    bytes, other name, so seq 0 and 1 are stored again beside the first release's object.
    """
    uid = f"upgrade-repeat-{uuid.uuid4().hex[:8]}"
    session = push_chunks(ctx, FakeClock(time.time()), uid, 2, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, ctx.store.read_raw(sid, 10)[1][1])
    session.close()
    chunks = [e for e in read_entries(ctx, sid) if isinstance(e, ChunkEntry)]
    assert [c.seq for c in chunks] == [0, 1, 1]
    _first_release_flush_died(ctx, sid, [chunks], chunks[-1].entry_id)
    _drain(ctx, sid)
    # Only what the first release stored (its own repeat included); nothing new.
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 1]
    assert read_entries(ctx, sid) == []


def test_a_stale_first_release_intent_is_dropped_and_the_session_flows(
    ctx: WorkerContext,
) -> None:
    """The intent names an entry that is gone (its flush had committed it after all):
    read up to it, the flush finds nothing of it, forgets it and flushes normally. Before,
    a pin past the stream's start would have kept every later flush reading nothing."""
    uid = f"upgrade-stale-{uuid.uuid4().hex[:8]}"
    sid = push_chunks(ctx, FakeClock(time.time()), uid, 3).session_id
    ctx.store.client.set(keys(sid).legacy_intent, b"1-0")  # older than every entry
    result = flush(ctx, sid)
    assert result.failed is None and result.objects_created == 1
    assert not ctx.store.client.exists(keys(sid).legacy_intent)
    assert_exactly_once(ctx, uid, sid, 3)


def test_a_legacy_plan_longer_than_two_reads_is_resumed(ctx: WorkerContext) -> None:
    """A first-release cut spans more entries than twice today's read limit (read_limit=10
    stands for 500, the 60 chunks for up to 2,000); the flush that records it dies after its
    first upload; its successor reads the whole plan back (before: "entry ... is gone")."""
    ctx.config = replace(ctx.config, read_limit=10)
    uid = f"upgrade-long-{uuid.uuid4().hex[:8]}"
    sid = push_chunks(ctx, FakeClock(time.time()), uid, 60).session_id
    chunks = [e for e in read_entries(ctx, sid) if isinstance(e, ChunkEntry)]
    _first_release_flush_died(ctx, sid, [chunks[0:12]], chunks[59].entry_id)
    first = flush(ctx, sid, CueBucket(ctx.bucket, after={1: die}))
    assert first.failed and len(ctx.store.read_plan(sid)) == 4  # 49 entries left, > 2 reads
    second = flush(ctx, sid)
    assert second.failed is None and second.resumed_plan, second
    _drain(ctx, sid)
    assert_exactly_once(ctx, uid, sid, 60)
