"""Repeated seqs that escape the planner's "repeat within one read" rule. Handled by
deleting a repeat with the
object that holds its original, wherever it lies, and by the session's stored-seq bitmap
(``audiosync:{S}:stored``, set by each commit), which sends a chunk whose seq is already
stored to quarantine. The faults this guards against:

The planner drops a chunk whose seq already appeared *earlier in the same read* and
deletes it "with the rest" (workers/planner.py). Deletion is a prefix of the stream,
though: a repeat that lies behind the flush's cut (a young tail, the 8-object cap, the
read limit) is kept, while its original is committed and deleted. The next flush no
longer sees the original, so the repeat is an ordinary chunk and is stored a second time.

Likewise a chunk quarantined because it "repeats entry X with other content" is, once
replayed, alone in its read: it is stored, a second chunk for the same (session, seq).

Repeats in a stream are what the system expects from a first-release pusher (no
``:appended`` mark), an expired or lost mark, or a replay; the tests append them with a
raw XADD, exactly like test_exactly_once.test_a_chunk_appended_twice_is_stored_once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from backend_hooks.contract import container
from backend_hooks.contract.codec import ChunkEncoder
from tests.integration.flushing import (
    RATE,
    FakeClock,
    assert_exactly_once,
    flush,
    push_chunks,
    raw_xadd,
    read_entries,
    stored_seqs,
)
from workers import quarantine
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # the bucket outlives each test


def test_an_identical_repeat_behind_a_young_tail_goes_with_its_original(ctx: WorkerContext) -> None:
    """seq 0-11 (a full object), seq 12 (young), then a retried append of seq 3.

    Flush 1 writes [0..11] and counts the repeat of seq 3 as dropped, but the repeat sits
    after the first kept chunk (seq 12), so it stays in the stream. The session closes;
    flush 2 reads [12, repeat of 3, end]: seq 3 is new to this read, joins seq 12's group
    and is stored again.
    """
    uid = _uid("behind-tail")
    session = push_chunks(ctx, FakeClock(time.time()), uid, 13, close=False)
    sid = session.session_id
    raw = ctx.store.read_raw(sid, 100)
    assert len(raw) == 13
    raw_xadd(ctx, sid, raw[3][1])  # identical content: a retried append

    first = flush(ctx, sid)
    assert first.objects_created == 1 and first.repeats_dropped == 1  # "dropped"...
    session.close()
    second = flush(ctx, sid)
    assert second.failed is None
    # ...yet seq 3 is in two objects: stored_seqs == [0, 1, 2, 3, 3, 4, ..., 12]
    assert_exactly_once(ctx, uid, sid, 13)


def test_an_identical_repeat_behind_the_object_cap_goes_with_its_original(
    ctx: WorkerContext,
) -> None:
    """The same with no clock involved: a closed session read whole, cut by max_objects.

    max_objects=1 stands for the 8-object cap (8 x 60 s in one read) so the test pushes
    25 chunks instead of 97. The repeat of seq 3 comes after everything; the first flush
    writes [0..11] and is due again at once; the later flushes store seq 3 again.
    """
    ctx.policy = replace(ctx.policy, max_objects=1)
    uid = _uid("behind-cap")
    session = push_chunks(ctx, FakeClock(time.time()), uid, 25, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, ctx.store.read_raw(sid, 100)[3][1])
    session.close()
    for _ in range(5):
        if not read_entries(ctx, sid):
            break
        assert flush(ctx, sid).failed is None
    assert_exactly_once(ctx, uid, sid, 25)


def _other_content(session_id: str, fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A valid chunk with the same seq, start and length but other audio."""
    info = container.ChunkInfo(
        session_id=session_id,
        seq=int(fields[b"seq"]),
        start_us=int(fields[b"start_us"]),
        sample_rate=RATE,
        sample_count=int(fields[b"samples"]),
    )
    encoder = ChunkEncoder(RATE)
    pcm = bytes((i * 37) % 256 for i in range(2 * info.sample_count))  # not silence
    data = container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)
    assert data != fields[b"data"]
    return {**fields, b"data": data}


def test_a_replayed_conflicting_repeat_is_quarantined_again(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    """Quarantined as "seq 1 repeats entry ... with other content", then replayed.

    docs/FORMATS.md 5.4 and workers/quarantine.py: "an entry still bad comes straight
    back with its reason". After the replay the original seq 1 is already committed and
    gone from the stream, so the conflicting chunk passes every check, ages, and is stored:
    two different chunks for (session, seq 1), overlapping in time.
    """
    uid = _uid("conflict-replay")
    session = push_chunks(ctx, FakeClock(time.time()), uid, 3, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, _other_content(sid, ctx.store.read_raw(sid, 10)[1][1]))
    session.close()

    first = flush(ctx, sid)
    assert first.quarantined == 1 and first.objects_created == 1
    [entry] = ctx.store.read_quarantine(sid)
    assert "repeats entry" in entry.reason
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2]

    assert quarantine.replay(ctx.store, sid) == 1
    clock.now += 3600  # whenever the next flush comes, the chunk is old enough to write
    second = flush(ctx, sid)
    assert second.failed is None
    assert second.quarantined == 1, second  # still a conflicting repeat: back with its reason
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2]


def test_a_chunk_sent_again_after_its_original_was_stored_is_quarantined(
    ctx: WorkerContext,
) -> None:
    """The pusher's ``:appended`` mark lost (a Redis restart, its TTL): a retried append of
    seq 1 arrives after the object holding seq 1 was committed and its entries deleted.
    The session's stored-seq bitmap catches it: quarantined with its reason, not stored."""
    uid = _uid("sent-again")
    session = push_chunks(ctx, FakeClock(time.time()), uid, 3, close=False)
    sid = session.session_id
    copy = ctx.store.read_raw(sid, 10)[1][1]
    session.close()
    assert flush(ctx, sid).objects_created == 1
    assert read_entries(ctx, sid) == []

    raw_xadd(ctx, sid, copy)
    again = flush(ctx, sid)
    assert again.quarantined == 1 and again.objects_created == 0
    [entry] = ctx.store.read_quarantine(sid)
    assert "in a stored object already" in entry.reason
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2]


def test_the_stored_seq_bitmap_reads_as_redis_writes_it(ctx: WorkerContext) -> None:
    key = ctx.store.keys("bitmap-test").stored
    for seq in (0, 9, 100, 2**21 - 1):
        ctx.store.client.setbit(key, seq, 1)
    stored = ctx.store.stored_seqs("bitmap-test")
    assert [s for s in range(2**21) if s in stored] == [0, 9, 100, 2**21 - 1]
    assert -1 not in stored and 2**21 not in stored


def test_a_commit_with_a_seq_out_of_range_writes_nothing(ctx: WorkerContext) -> None:
    sid = push_chunks(ctx, FakeClock(time.time()), _uid("seq-range"), 2).session_id
    entry_id = ctx.store.read_raw(sid, 1)[0][0]
    recorded = '{"name":"x","ids":["' + entry_id.decode() + '"]}'
    assert ctx.store.acquire_lease(sid, "t", 30)
    ctx.store.record_plan(sid, "t", [recorded])
    keys = ctx.store.client.keys(f"*{sid}*")
    before = {key: ctx.store.client.dump(key) for key in keys}
    with pytest.raises(ValueError, match="out of range"):
        ctx.store.commit_object(sid, "t", recorded, [entry_id], [2**21])
    assert {key: ctx.store.client.dump(key) for key in keys} == before
