"""Every chunk stored exactly once, every session always making progress: the faults found.

Each test stops or stalls flushes at the exact dangerous point (a bucket that fails on
cue, threads held on events, a lease expired by hand), on the real Redis and the real
GCS emulator, and audits every chunk by its (session, seq) identity afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
import redis

from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract import container
from backend_hooks.contract.entries import KIND_CHUNK, NewEntry
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import (
    CHUNK,
    RATE,
    CueBucket,
    FakeClock,
    assert_exactly_once,
    die,
    flush,
    in_thread,
    keys,
    lease_expires,
    push_chunks,
    raw_xadd,
    read_entries,
    stall_until,
    stored_seqs,
)
from workers import quarantine
from workers.context import WorkerContext
from workers.store import LeaseLostError

pytestmark = pytest.mark.integration


# -- 1. a zombie's writes --------------------------------------------------------------------


def test_a_flush_that_outlived_its_lease_changes_nothing(ctx: WorkerContext) -> None:
    """A stalls past its lease; B adopts A's plan and stalls; A wakes; C finishes; B wakes."""
    sid = push_chunks(ctx, FakeClock(time.time()), "zombie", 24).session_id  # two full objects

    a_stalled, a_resume = threading.Event(), threading.Event()
    bucket_a = CueBucket(ctx.bucket, before={0: stall_until(a_stalled, a_resume)})
    thread_a, result_a = in_thread(lambda: flush(ctx, sid, bucket_a))
    assert a_stalled.wait(10)
    plan = ctx.store.read_plan(sid)
    assert len(plan) == 2
    lease_expires(ctx, sid)

    b_stalled, b_resume = threading.Event(), threading.Event()
    bucket_b = CueBucket(ctx.bucket, before={1: stall_until(b_stalled, b_resume)})
    thread_b, result_b = in_thread(lambda: flush(ctx, sid, bucket_b))
    assert b_stalled.wait(10)  # B stored and committed object 0 of A's plan
    assert ctx.store.read_plan(sid) == plan[1:]

    a_resume.set()  # A's upload of object 0 ends (412: B stored it); its commit is refused
    thread_a.join(10)
    assert result_a[0].skipped == "lease lost"
    assert ctx.store.read_plan(sid) == plan[1:]  # B's plan is untouched

    lease_expires(ctx, sid)
    result_c = flush(ctx, sid)
    assert result_c.resumed_plan and result_c.objects_created == 1
    b_resume.set()
    thread_b.join(10)
    assert result_b[0].skipped == "lease lost"
    assert read_entries(ctx, sid) == []  # the end marker went with the plan's last object
    assert_exactly_once(ctx, "zombie", sid, 24)


def test_every_flush_write_is_fenced_by_the_lease(ctx: WorkerContext) -> None:
    sid = push_chunks(ctx, FakeClock(time.time()), "fenced", 2).session_id
    ctx.store.client.set(keys(sid).legacy_intent, b"1-0")  # something for every script to hit
    assert ctx.store.acquire_lease(sid, "holder", 30)
    before = {key: ctx.store.client.dump(key) for key in ctx.store.client.keys(f"*{sid}*")}
    entry_id = read_entries(ctx, sid)[0].entry_id
    store, other = ctx.store, "not-the-holder"
    attempts: dict[str, Callable[[], object]] = {
        "renew": lambda: store.renew_lease(sid, other, 30),
        "quarantine": lambda: store.quarantine(sid, other, [(entry_id, "x")]),
        "record_plan": lambda: store.record_plan(sid, other, ['{"name":"x","ids":["1-0"]}']),
        "commit_object": lambda: store.commit_object(sid, other, "x", [entry_id], [0]),
        "finish": lambda: store.finish(
            sid, other, drop_ids=[entry_id], last_read_id=None, next_due=None, now=0
        ),
        # (record_failure counts whoever holds the lease: test_failures_past_the_lease.py)
        "park_batch": lambda: store.park_batch(sid, other, "r", entry_id, 10),
        "hand_back": lambda: store.hand_back(sid, other, now=0),
        "drop_legacy_intent": lambda: store.drop_legacy_intent(sid, other),
    }
    for name, attempt in attempts.items():
        with pytest.raises(LeaseLostError):
            attempt()
        after = {key: store.client.dump(key) for key in store.client.keys(f"*{sid}*")}
        assert after == before, name


# -- 2. a second failure must not lose the recorded cut ---------------------------------------


def test_two_failures_in_a_row_keep_the_recorded_cut(ctx: WorkerContext, clock: FakeClock) -> None:
    session = push_chunks(ctx, clock, "twice", 10, close=False)  # 50 s: one young group
    sid = session.session_id
    clock.sync(ctx.store.client)
    clock.now += 61  # aged: the flush writes seq 0-9
    first = flush(ctx, sid, CueBucket(ctx.bucket, after={0: die}))  # stored, then dies
    assert first.failed and "Died" in first.failed
    [recorded] = ctx.store.read_plan(sid)

    session.push(CHUNK * 2, time.time() + 60)  # seq 10-11 arrive; they would join the group
    second = flush(ctx, sid, CueBucket(ctx.bucket, after={0: die}))  # 412, then dies too
    assert second.failed and second.resumed_plan
    assert ctx.store.read_plan(sid) == [recorded]  # never overwritten

    third = flush(ctx, sid)
    assert (third.resumed_plan, third.objects_already_stored, third.objects_created) == (
        True,
        1,
        0,
    )
    session.close()
    assert flush(ctx, sid).objects_created == 1  # seq 10-11
    assert_exactly_once(ctx, "twice", sid, 12)
    assert not ctx.store.client.exists(keys(sid).failures)  # success clears the count


# -- 3. the read limit is a cut: no livelock ---------------------------------------------------


def test_a_full_read_of_one_unfinished_group_makes_progress(
    stack_settings_20ms: Settings, redis_client: redis.Redis
) -> None:
    ctx = WorkerContext.from_settings(stack_settings_20ms)
    ctx.config = replace(ctx.config, read_limit=50)
    client = AudioSyncClient(stack_settings_20ms)
    session = client.open_session("livelock", "conv", RATE, "standard")
    session.push(bytes(2 * RATE * 4), time.time())  # 200 chunks of 20 ms, young, not closed
    sid = session.session_id
    assert len(read_entries(ctx, sid)) == 200
    flushes = 0
    while read_entries(ctx, sid):
        result = flush(ctx, sid)
        assert result.objects_created == 1 and result.entries_deleted == 50, result
        flushes += 1
        assert flushes <= 4
    assert stored_seqs(ctx, "livelock", "conv") == list(range(200))


@pytest.fixture
def stack_settings_20ms(ctx: WorkerContext) -> Settings:
    return replace(ctx.settings, chunk_seconds=0.02)


# -- 4. a retried append -------------------------------------------------------------------


def test_an_append_sent_again_adds_nothing(ctx: WorkerContext) -> None:
    client = AudioSyncClient(ctx.settings)
    entries = [
        NewEntry(kind=KIND_CHUNK, uid="u", cid="c", enq_us=1, level="standard", rate=RATE, seq=i)
        for i in range(3)
    ]
    appender = client.appender
    assert (
        appender.append(keys("retry"), entries[:2], first_n=0, urgent=False, max_age_seconds=60)
        == 2
    )
    # The reply was lost; the pusher sends the same batch again, then with the next entry.
    assert (
        appender.append(keys("retry"), entries[:2], first_n=0, urgent=False, max_age_seconds=60)
        == 0
    )
    assert (
        appender.append(keys("retry"), entries[1:], first_n=1, urgent=False, max_age_seconds=60)
        == 1
    )
    seqs = [int(f[b"seq"]) for _, f in ctx.store.read_raw("retry", 100)]
    assert seqs == [0, 1, 2]


def test_a_chunk_appended_twice_is_stored_once(ctx: WorkerContext) -> None:
    session = push_chunks(ctx, FakeClock(time.time()), "repeat", 3, close=False)
    sid = session.session_id
    _, fields = ctx.store.read_raw(sid, 10)[1]
    raw_xadd(ctx, sid, fields)  # what a replay without the append mark does
    session.close()
    result = flush(ctx, sid)
    assert result.repeats_dropped == 1 and result.objects_created == 1
    assert_exactly_once(ctx, "repeat", sid, 3)
    # The object is a valid chained Ogg Opus file: every link decodes, serials all differ.
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    [item] = storage.list_audio_chunks("repeat", "conv", context=sctx)
    chunks = container.parse_chunks(ctx.bucket.download(item["path"]))
    assert sum(len(c.decode()) // 2 for c in chunks) == 3 * 5 * RATE


# -- 5, 6, 7. poison entries go to quarantine, the rest flows ---------------------------------


def _poison(fields: dict[bytes, bytes], change: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    out = {k: v for k, v in fields.items() if change.get(k, v) is not None}
    out.update({k: v for k, v in change.items() if v is not None})
    return {**out, b"poison": b"1"}


POISON = [
    pytest.param({b"v": b"9"}, "entry format", id="5-wrong-version"),
    pytest.param({b"seq": None}, "'seq' is missing", id="5-missing-seq"),
    pytest.param({b"kind": b"bogus"}, "kind 'bogus'", id="5-unknown-kind"),
    pytest.param({b"uid": b"\xff\xfe"}, "not ASCII", id="5-non-utf8-uid"),
    pytest.param({b"rate": b"0"}, "rate 0", id="5-rate-zero"),
    pytest.param({b"start_us": b"-5"}, "start_us -5", id="5-negative-start"),
    pytest.param({b"seq": b" 7"}, "not an integer", id="5-seq-with-space"),
    pytest.param({b"level": b"secret"}, "level 'secret'", id="5-unknown-level"),
    pytest.param({b"uid": b"a/b"}, "may only hold", id="5-uid-with-slash"),
    pytest.param({b"data": b"garbage" * 50}, "not an audiosync Ogg Opus", id="6-garbage-data"),
    pytest.param({b"seq": b"9"}, "do not match", id="6-tags-disagree-with-fields"),
    pytest.param({b"start_us": b"1" + b"0" * 300}, "from the entry's Redis time", id="7-1e300"),
    pytest.param(
        {b"start_us": str(int(time.time() * 1e3) * 1_000_000).encode()},
        "from the entry's Redis time",
        id="7-milliseconds-as-seconds",
    ),
]


@pytest.mark.parametrize(("change", "reason"), POISON)
def test_a_poison_entry_is_quarantined_and_its_session_flows(
    ctx: WorkerContext,
    change: dict[bytes, bytes | None],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = f"poisoned-{uuid.uuid4().hex[:8]}"  # the bucket outlives each test
    session = push_chunks(ctx, FakeClock(time.time()), uid, 2, close=False)
    sid = session.session_id
    _, fields = ctx.store.read_raw(sid, 10)[1]
    raw_xadd(ctx, sid, _poison(fields, change))
    session.push(CHUNK * 2, time.time() + 10)  # good chunks after the poison
    session.close()

    result = flush(ctx, sid)
    assert result.failed is None and result.quarantined == 1
    assert_exactly_once(ctx, uid, sid, 4)
    [entry] = ctx.store.read_quarantine(sid)
    assert reason in entry.reason
    assert entry.fields == _poison(fields, change)  # kept as it was, every field
    assert ctx.store.client.zscore(keys(sid).due, sid) is None  # nothing left to do
    assert sid in ctx.store.quarantined_sessions(keys(sid).shard)
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback


def test_metadata_counts_only_the_chunks_stored(ctx: WorkerContext) -> None:
    session = push_chunks(ctx, FakeClock(time.time()), "counted", 2, close=False)
    sid = session.session_id
    _, fields = ctx.store.read_raw(sid, 10)[0]
    raw_xadd(ctx, sid, _poison(fields, {b"data": b"OggS" + bytes(100)}))
    session.close()
    flush(ctx, sid)
    [blob] = list(ctx.bucket.client.list_blobs(ctx.bucket.bucket, prefix="chunks/counted/"))
    assert blob.metadata["audiosync-samples"] == str(2 * 5 * RATE)
    assert blob.metadata["audiosync-chunks"] == "2"


# -- 8. one clock -----------------------------------------------------------------------------


def test_a_pusher_clock_ahead_does_not_delay_a_closed_conversation(ctx: WorkerContext) -> None:
    ahead = FakeClock(time.time() + 120)
    session = push_chunks(ctx, ahead, "ahead", 1)
    now = redis_time(ctx.store.client)
    due = ctx.store.client.zscore(keys(session.session_id).due, session.session_id)
    assert due is not None and due <= now  # Redis time, not the pusher's
    claimed = ctx.store.claim_due(now, 10, now + 30, session.redis_keys.shard)
    assert claimed == [session.session_id]


def test_a_young_chunk_is_due_after_max_age_of_redis_time(ctx: WorkerContext) -> None:
    behind = FakeClock(time.time() - 3600)
    session = push_chunks(ctx, behind, "behind", 1, close=False)
    due = ctx.store.client.zscore(keys(session.session_id).due, session.session_id)
    now = redis_time(ctx.store.client)
    assert due == pytest.approx(now + ctx.settings.batch_max_age_seconds, abs=1)


# -- failures: backoff in Redis, one line each, parked at the limit, replayed -----------------


def test_a_failing_session_backs_off_is_parked_and_replays(
    ctx: WorkerContext, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ctx.config = replace(ctx.config, max_attempts=3)
    sid = push_chunks(ctx, clock, "failing", 2).session_id
    broken = CueBucket(ctx.bucket, before={i: die for i in range(10)})
    caplog.set_level(logging.WARNING, logger="workers.flush")
    for attempt, delay in ((1, 1), (2, 2)):
        result = flush(ctx, sid, broken)
        assert result.failed == "Died: killed here" and result.parked == 0
        assert ctx.store.failures(sid).count == attempt
        due = ctx.store.client.zscore(keys(sid).due, sid)
        assert due == pytest.approx(clock.now + delay)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and len(caplog.records) == 2  # a traceback only the first time

    parked = flush(ctx, sid, broken)
    assert parked.parked == 3  # two chunks and the end marker
    quarantined = ctx.store.read_quarantine(sid)
    assert all("parked after 3 failed flushes" in q.reason for q in quarantined)
    for key in (keys(sid).chunks, keys(sid).plan, keys(sid).failures):
        assert not ctx.store.client.exists(key)
    assert ctx.store.client.zscore(keys(sid).due, sid) is None

    assert quarantine.replay(ctx.store, sid) == 3
    assert ctx.store.read_quarantine(sid) == []
    assert sid not in ctx.store.quarantined_sessions(keys(sid).shard)
    assert ctx.store.client.zscore(keys(sid).due, sid) is not None  # due again
    assert flush(ctx, sid).objects_created == 1
    assert_exactly_once(ctx, "failing", sid, 2)


def test_a_replayed_entry_that_is_still_bad_comes_back_with_its_reason(ctx: WorkerContext) -> None:
    session = push_chunks(ctx, FakeClock(time.time()), "replayed", 1, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, {b"v": b"7", b"poison": b"1"})
    session.close()
    assert flush(ctx, sid).quarantined == 1
    assert quarantine.replay(ctx.store, sid) == 1
    result = flush(ctx, sid)
    assert result.quarantined == 1 and result.failed is None
    [entry] = ctx.store.read_quarantine(sid)
    assert "v=b'7'" in entry.reason and entry.fields[b"poison"] == b"1"
    # forgotten at replay, back
    assert ctx.store.client.zscore(keys(sid).quarantine_index, sid) == 1
